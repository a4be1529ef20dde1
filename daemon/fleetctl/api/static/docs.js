// The API's docs page (/v1/docs): Swagger UI over /v1/openapi.json, vendored at build time.
// "Authorize" takes the bearer token for "Try it out"; it is kept in this page only.
"use strict";

window.ui = SwaggerUIBundle({
  url: "/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
