package config

import (
	"reflect"
	"testing"

	"github.com/recallrelay/recallrelay/relay"
)

// Every default the relay uses is written once, in package relay: a
// configuration without a file maps onto exactly the relay's defaults.
func TestDefaultsAreTheRelays(t *testing.T) {
	c := Default()
	for _, l := range []Listener{c.Listeners.Tenant, c.Listeners.Return} {
		lc, err := l.RelayListener()
		if err != nil {
			t.Fatal(err)
		}
		lc.Listen = ""
		if want := relay.DefaultListener(); !reflect.DeepEqual(lc, want) {
			t.Errorf("listener defaults\n got %+v\nwant %+v", lc, want)
		}
	}
	for _, cl := range []Client{c.Tenant.Client, c.Vendors[0].Client} {
		h := cl.RelayNextHop("", "")
		h.HELO = ""
		if want := relay.DefaultNextHop(); !reflect.DeepEqual(h, want) {
			t.Errorf("next-hop defaults\n got %+v\nwant %+v", h, want)
		}
	}
	p, err := c.RelayPolicy(nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.RecordTTL != relay.DefaultRecordTTL || p.MaxDuplicateReturns != relay.DefaultMaxDuplicateReturns ||
		p.ReturnWithoutRecord != relay.ReturnReject || p.Duplicates != relay.DuplicatesSuppress ||
		p.FallbackMatching != relay.FallbackTrusted || p.NoReceived ||
		string(p.LoopMarker.Raw) != relay.DefaultLoopMarkerName+": "+relay.DefaultLoopMarkerValue+"\r\n" {
		t.Errorf("policy defaults %+v", p)
	}
}
