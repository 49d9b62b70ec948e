package httpapi

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"

	"go.yaml.in/yaml/v4"
)

// openAPISource is the OpenAPI 3.1 document of the HTTP API (SPEC §9.4).
//
// It is written by hand, not generated from the Go types: it is the
// contract clients are built from, and reads (and is reviewed) like one,
// with the rules a type cannot carry (who may call, which errors, limits)
// next to each route; the handlers decode into small structs of their own
// that would describe the code, not the promise. What keeps the two from
// drifting is the tests: one fails when a route the server registers is
// missing from the document or a documented one is not served, and the
// black-box tests validate real responses against its schemas.
//
// YAML is the source for its comments and its brevity; it is served as
// JSON.
//
//go:embed openapi.yaml
var openAPISource []byte

var openAPIJSON = sync.OnceValues(func() ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(openAPISource, &doc); err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return json.Marshal(doc)
})

// OpenAPI returns the OpenAPI document as JSON.
func OpenAPI() ([]byte, error) { return openAPIJSON() }

// openAPI serves GET /api/openapi.json.
func (a *API) openAPI(w http.ResponseWriter, r *http.Request) {
	b, err := openAPIJSON()
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeRawJSON(w, http.StatusOK, b)
}
