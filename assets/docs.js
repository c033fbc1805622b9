// The API's docs page: Swagger UI (vendored from npm's swagger-ui-dist, see
// assets/vendor/MANIFEST) over this service's own document.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    validatorUrl: null,
  });
});
