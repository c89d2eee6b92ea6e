// Package salesforce is fanout's Salesforce connector, registered as type
// "salesforce". It upserts one sObject record per aggregate (keyed by the
// notification key in an external id field) or publishes one platform event
// per notification, over the REST API, authenticated with the OAuth 2.0
// client credentials or JWT bearer flow.
//
// # Settings
//
//	connectors:
//	  salesforce:
//	    type: salesforce
//	    settings:                                      # decoded into Settings
//	      login_url: https://acme.my.salesforce.com    # My Domain; token URL = login_url + /services/oauth2/token
//	      auth:
//	        type: client_credentials                   # or jwt_bearer
//	        client_id: 3MVG9...                        # consumer key (JWT iss)
//	        client_secret_env: SF_CLIENT_SECRET        # or client_secret_file (re-read on change), client_secret
//	        # jwt_bearer only:
//	        # username: integration@acme.com           # sub
//	        # audience: https://login.salesforce.com   # default; https://test.salesforce.com for sandboxes
//	        # private_key_file: /etc/fanout/sf.key     # or private_key_env; PEM PKCS#1/#8, unencrypted RSA
//	      api_version: v66.0                           # default; form vNN.N
//	      mode: upsert                                 # or platform_event
//	      object: Quote__c                             # upsert
//	      external_id_field: Quote_Ext_Id__c           # upsert; its value is the notification key
//	      # event: Quote_Change__e                     # platform_event
//	      fields:                                      # Salesforce field: source
//	        Amount__c: amount                          # payload.amount
//	        Customer_Email__c: profile_snapshot.email  # nested payload path (arrays by index: items.0.sku)
//	        Event_Type__c: $.event_type                # path from the envelope root
//	        Quote_Id__c: "@key"                        # notification attribute
//	      notification_id_field: Fanout_Notification_Id__c  # default
//	      version_field: Fanout_Version__c             # default
//	      batch:
//	        max_records: 200                           # 1..200 records per sObject Collections call
//	        platform_event_collections: false          # true: publish events in batches (POST /composite/sobjects)
//	      timeout: 30s                                 # per HTTP attempt
//	      max_attempts: 3                              # HTTP attempts per call (in-call retries)
//	      retry_wait_min: 200ms                        # full-jitter exponential backoff bounds
//	      retry_wait_max: 2s
//	      retry_after:                                 # waits asked of the delivery layer on limits
//	        concurrent: 30s                            # REQUEST_LIMIT_EXCEEDED ConcurrentPerOrgLongTxn
//	        daily: 5m                                  # REQUEST_LIMIT_EXCEEDED TotalRequests
//	        event_hourly: 10m                          # LIMIT_EXCEEDED (platform event hourly allocation)
//	      token_max_age: 0                             # >0: refresh the token proactively at this age
//	      allow_http: false                            # http login_url on a non-loopback host (simulators only)
//	      projections:                                 # per projection (fanout_projection); others use the above
//	        orders:
//	          object: Order__c                         # upsert; or event: Order_Change__e in platform_event mode
//	          external_id_field: Order_Ext_Id__c
//	          fields: {Total__c: amount}               # replaces fields whole; fields: {} copies the payload
//	          # notification_id_field, version_field: when the object names them otherwise
//
// # Field mapping
//
// Every record carries notification_id_field = the notification ID and
// version_field = the aggregate version, so that Salesforce automation can
// deduplicate replays and reject stale versions. The rest comes from fields:
// a source is a dotted path in the envelope's payload object ("amount",
// "profile_snapshot.email"), a path from the envelope root when it starts
// with "$." ("$.event_type"), or a notification attribute: @id, @key,
// @projection, @type, @source, @version, @time (RFC 3339), @priority,
// @trigger_type. A source
// that is absent leaves the Salesforce field untouched; JSON null clears it;
// an object or array is sent as its JSON text (for a long text field).
//
// Without fields, the payload's top-level scalar members (strings, numbers,
// booleans, null) are copied under their own names, so the payload must then
// use Salesforce API names (Amount__c); nested members are skipped, as are
// Id, the external id field and the two fields above. Explicit fields are
// recommended.
//
// # Projections
//
// A notification's key is its aggregate id, unique within its projection.
// projections maps a projection to its own object and external id field
// (or event) and fields; what an entry leaves out comes from the top-level
// settings, and a notification whose projection has no entry (or that has
// no projection) uses them. DeliverBatch splits a batch by mapping, since
// one sObject Collections call takes one object type, and treats a key as
// the projection and the aggregate id when it holds back the later
// notifications of a key that failed.
//
// # Behaviour
//
// Tokens: Salesforce returns no expires_in, so the connector caches the
// token itself (connectors/tokencache) and uses its instance_url as the API
// base (login_url if absent). On 401 it drops that token, fetches a new one
// and retries once in the same call; a second 401 is Halt (the access
// itself was revoked). A token request refused with 4xx (invalid_grant,
// invalid_client) is Halt: no record can go out until the credentials are
// fixed, and its message carries error and error_description only. 5xx and
// network failures are Retryable; a certificate that does not verify or a
// host that does not resolve is Halt.
//
// Classification: any 2xx is success (201 created, 200/204 updated; a
// platform event's 201 with an OPERATION_ENQUEUED entry in errors too).
// UNABLE_TO_LOCK_ROW, 5xx, 408, 429 and network errors are Retryable
// (and retried in the call, up to max_attempts); REQUEST_LIMIT_EXCEEDED and
// LIMIT_EXCEEDED are Retryable with a RetryAfter from retry_after.
// Failures of the endpoint rather than the record are Halt: 404 NOT_FOUND
// (unknown object, external id field or API version), INVALID_TYPE,
// API_DISABLED_FOR_ORG, 403 other than limits and record access, 410 and
// 3xx other than 300. Record-specific failures are Permanent: 300 (external
// id matched several records), 400 validation and parse errors
// (JSON_PARSER_ERROR, INVALID_FIELD, REQUIRED_FIELD_MISSING,
// FIELD_CUSTOM_VALIDATION_EXCEPTION, DUPLICATE_VALUE, MALFORMED_ID), 403
// INSUFFICIENT_ACCESS_OR_READONLY. Errors carry the Salesforce errorCode in
// Code. The external id goes into the URL as one percent-encoded segment
// (transport.PathSegment), so no id can change the path.
//
// Batches: see DeliverBatch. Usage: every response's Sforce-Limit-Info
// (api-usage=used/max; api-bursts=a/b) is recorded and reported by Usage
// and Limits.
//
// Secrets (client secret, private key, access tokens) never appear in
// errors or logs. client_secret_file and private_key_file are re-read when
// they change and on SIGHUP (internal/secret).
package salesforce
