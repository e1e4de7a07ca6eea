package relaytest_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/recallrelay/recallrelay/relaytest"
)

// A generated message travels through a signature service that strips
// unknown headers; the identity comparison shows what recall would lose.
func Example() {
	tenant, err := relaytest.NewTenant(relaytest.TenantConfig{})
	if err != nil {
		log.Fatal(err)
	}
	if err := tenant.Start(); err != nil {
		log.Fatal(err)
	}
	defer tenant.Close()

	behaviors, err := relaytest.ParseBehaviors("strip-ms-headers,stamp-marker")
	if err != nil {
		log.Fatal(err)
	}
	vendor, err := relaytest.NewVendor(relaytest.VendorConfig{
		Name: "signatures", ReturnAddr: tenant.Addr(), Behaviors: behaviors,
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := vendor.Start(); err != nil {
		log.Fatal(err)
	}
	defer vendor.Close()

	msg := relaytest.Generate(relaytest.GenerateOptions{Seed: 1})[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sender := relaytest.Sender{Addr: vendor.Addr()}
	if res := sender.Send(ctx, msg); !res.Accepted {
		log.Fatal(res.Err)
	}

	got, err := tenant.WaitDeliveries(1, 10*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	r := relaytest.CompareIdentity(msg.Data, got[0].Data)
	fmt.Println(msg.Name, "intact:", r.Intact)
	fmt.Println("kept Message-ID:", len(r.Changed) == 0)
	// Output:
	// gen-01-plain intact: false
	// kept Message-ID: true
}
