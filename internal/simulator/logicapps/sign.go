package logicapps

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"
)

// API versions and SAS constants the callback URLs carry.
const (
	ConsumptionAPIVersion = "2016-10-01"
	StandardAPIVersion    = "2022-05-01"
	SASVersion            = "1.0"
)

// CanonicalString is the string the simulator signs for a callback URL:
//
//	<path>?api-version=<api-version>&sp=<sp>&sv=<sv>
//
// where <path> is the decoded URL path exactly as routed (for example
// "/workflows/wf1/triggers/manual/paths/invoke") and each value is the
// decoded query value re-encoded with url.QueryEscape (so sp
// "/triggers/manual/run" appears as "%2Ftriggers%2Fmanual%2Frun"). The
// order is fixed and sig itself is not part of it. How the real service
// builds its signature is not public; this only has to bind the sig to the
// path and the permissions the way the real one does, so that a URL edited
// by hand fails with 401.
func CanonicalString(path, apiVersion, sp, sv string) string {
	return path + "?api-version=" + url.QueryEscape(apiVersion) +
		"&sp=" + url.QueryEscape(sp) + "&sv=" + url.QueryEscape(sv)
}

// Signature returns the sig for the canonical string: HMAC-SHA256 with key,
// base64url-encoded without padding (43 characters, like real sigs).
func Signature(key, path, apiVersion, sp, sv string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(CanonicalString(path, apiVersion, sp, sv)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// TriggerPath returns the invoke path of a trigger: the Consumption shape
// /workflows/{workflow}/triggers/{trigger}/paths/invoke, or with standard
// the Standard (single-tenant) shape /api/{workflow}/triggers/{trigger}/invoke.
func TriggerPath(workflow, trigger string, standard bool) string {
	if standard {
		return "/api/" + workflow + "/triggers/" + trigger + "/invoke"
	}
	return "/workflows/" + workflow + "/triggers/" + trigger + "/paths/invoke"
}

// SignURL builds a valid callback URL for workflow and trigger on the
// simulator at base (e.g. "http://127.0.0.1:7071"), signed with key, in the
// Consumption shape or, with standard, the Standard shape, with the
// api-version of that flavour, sp=/triggers/{trigger}/run and sv=1.0.
func SignURL(base, key, workflow, trigger string, standard bool) string {
	path := TriggerPath(workflow, trigger, standard)
	apiVersion := ConsumptionAPIVersion
	if standard {
		apiVersion = StandardAPIVersion
	}
	sp := "/triggers/" + trigger + "/run"
	sig := Signature(key, path, apiVersion, sp, SASVersion)
	return strings.TrimRight(base, "/") + path +
		"?api-version=" + url.QueryEscape(apiVersion) +
		"&sp=" + url.QueryEscape(sp) +
		"&sv=" + url.QueryEscape(SASVersion) +
		"&sig=" + sig
}

// UnsignedURL is SignURL without the SAS parameters sp, sv and sig: the
// shape of a callback URL used with bearer (Entra ID) authentication.
func UnsignedURL(base, workflow, trigger string, standard bool) string {
	apiVersion := ConsumptionAPIVersion
	if standard {
		apiVersion = StandardAPIVersion
	}
	return strings.TrimRight(base, "/") + TriggerPath(workflow, trigger, standard) + "?api-version=" + url.QueryEscape(apiVersion)
}
