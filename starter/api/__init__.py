"""abdr's REST API, FastAPI's "bigger applications" layout: `main.make_api` builds the app
(auth, error shape, body limit), `routers/` holds one router per noun of /v1,
`dependencies` what the routers share, `errors` and `examples` what the OpenAPI document
declares."""
