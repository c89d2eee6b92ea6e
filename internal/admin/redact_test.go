package admin

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	in := `{"id":"e1","payload":{"password":"hunter2hunter2","api_key":"AKIA123","Authorization":"Bearer abc.def",
	"callback":"https://la.example/workflows/x/invoke?api-version=1&sig=SECRETSIG","nested":[{"client_secret":"cs-1","sig":"s2"}],
	"design":"kept","token_count":{"a":1},"amount":5000,"note":"see http://x.example/p?token=T0K3N for details"}}`
	out, ok := redactJSON([]byte(in))
	if !ok {
		t.Fatal("not JSON")
	}
	s := string(out)
	for _, secret := range []string{"hunter2", "AKIA123", "abc.def", "SECRETSIG", "api-version=1", "cs-1", `"s2"`, "T0K3N"} {
		if strings.Contains(s, secret) {
			t.Errorf("redacted payload still has %q: %s", secret, s)
		}
	}
	for _, kept := range []string{`"design":"kept"`, `"amount":5000`, "https://la.example/workflows/x/invoke?" + Redacted, `"id":"e1"`} {
		if !strings.Contains(s, kept) {
			t.Errorf("redacted payload lost %q: %s", kept, s)
		}
	}
	if _, ok := redactJSON([]byte("not json")); ok {
		t.Error("non-JSON accepted")
	}
	if got := redactText("POST https://h/p?sig=x failed"); got != "POST https://h/p?"+Redacted+" failed" {
		t.Errorf("redactText = %q", got)
	}
	for name, want := range map[string]bool{"password": true, "x-api-key": true, "sig": true, "SAS": true, "callback_sig": true,
		"signal": false, "design": false, "amount": false, "ce_id": false, "fanout_targets": false} {
		if got := secretName(name); got != want {
			t.Errorf("secretName(%q) = %v, want %v", name, got, want)
		}
	}
}
