// Package salesforce is a local fake of the Salesforce APIs fanout's
// salesforce connector calls, so that tests and the dev mode exercise the
// real connector code over real HTTP, including the failures a real org
// produces (see shared/reference/downstream-apis.md, "Salesforce fake").
//
// It serves:
//
//   - POST /services/oauth2/token: client_credentials (form or Basic
//     client authentication) and JWT bearer (RS256, iss = client id, aud,
//     sub/prn, exp at most 3 minutes ahead). The response has access_token,
//     instance_url (the fake's own URL), id, token_type, issued_at,
//     signature and scope, and no expires_in or refresh_token, as Salesforce.
//     Bad credentials: 400 invalid_grant "authentication failure"; wrong-host
//     mode: 400 invalid_grant "request not supported on this domain".
//   - Sessions expire after Config.SessionTTL (counted from issue) or on
//     RevokeSessions, then 401 [{"message":"Session expired or invalid",
//     "errorCode":"INVALID_SESSION_ID"}].
//   - PATCH /services/data/vNN.N/sobjects/{obj}/{extField}/{value}: upsert,
//     201 created:true, 200 created:false or 204 on update, 300 with the
//     matching record URLs when several records match, 404 NOT_FOUND for an
//     unknown object or external id field, 400 when Id or the external id
//     field is in the body, 400 INVALID_FIELD for unknown fields.
//   - PATCH /services/data/vNN.N/composite/sobjects/{obj}/{extField}:
//     Collections upsert, at most 200 records (else 400 EXCEEDED_ID_LIMIT),
//     HTTP 200 with one {id,success,errors,created} per record, allOrNone
//     rollback (ALL_OR_NONE_OPERATION_ROLLED_BACK).
//   - POST /services/data/vNN.N/sobjects/{Event__e}/: platform event publish,
//     201 {id,success:true,errors:[{statusCode:"OPERATION_ENQUEUED",...}]};
//     past the hourly allocation 400 LIMIT_EXCEEDED. POST
//     /services/data/vNN.N/composite/sobjects publishes (or inserts) up to
//     200 records with per-record results.
//   - GET /services/data/ (versions), GET .../limits, GET
//     .../sobjects/{obj}/{extField}/{value}.
//
// Every response of the REST API and the token endpoint carries
// Sforce-Limit-Info: api-usage=used/max for the rolling 24 h allocation; past
// it calls fail with 403 REQUEST_LIMIT_EXCEEDED "TotalRequests Limit
// exceeded.", and past LongRequestCap concurrent requests older than
// LongRequestThreshold with 403 REQUEST_LIMIT_EXCEEDED "ConcurrentPerOrgLongTxn
// Limit exceeded.". The fake never sends Retry-After. Errors are always
// JSON arrays.
//
// Faults (type Faults) change at run time: 503 by rate, error codes by rate
// or for the next N calls or records (Rule), an outage window, a rejected
// field value, latency with jitter and a slow mode, and the limits.
//
// Control endpoints for tests in other processes:
//
//	GET  /_sim/calls             every call seen (Call)
//	GET  /_sim/records/{object}  {"object","created","updated","records"}
//	POST /_sim/records/{object}  seed a record (JSON fields), duplicates allowed
//	GET  /_sim/faults            current Faults
//	POST /_sim/faults            merge the posted JSON into Faults
//	DELETE /_sim/faults          back to the initial Faults
//	POST /_sim/revoke            revoke every session
//	POST /_sim/reset             forget records, calls and usage
//	GET  /_sim/usage             API calls, daily and hourly usage
package salesforce
