package caddyfile_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/keyauth/caddy-keyauth"
)

// TestCaddyfileAdapt runs the fixtures in testdata, in the style of Caddy's
// caddytest/integration/caddyfile_adapt: a Caddyfile, a line of ten dashes,
// then the JSON it adapts to, or else text the adapt error must contain.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/*.caddytest")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures in testdata")
	}
	newlines := regexp.MustCompile(`\r?\n`)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(newlines.ReplaceAllString(string(data), "\n"), "----------")
			if len(parts) != 2 {
				t.Fatalf("want one line of ---------- in %s, got %d parts", file, len(parts))
			}
			caddyfile, expected := strings.TrimSpace(parts[0])+"\n", strings.TrimSpace(parts[1])
			if strings.HasPrefix(expected, "{") {
				if !caddytest.CompareAdapt(t, filepath.Base(file), caddyfile, "caddyfile", expected) {
					t.Errorf("%s does not adapt to the JSON expected (diff above)", file)
				}
				return
			}
			_, _, err = caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
			if err == nil {
				t.Fatalf("adapting %s: no error, want %q", file, expected)
			}
			if !strings.Contains(err.Error(), expected) {
				t.Errorf("adapting %s: error %q, want it to contain %q", file, err, expected)
			}
		})
	}
}

// The directive places itself before basic_auth and everything that serves
// the request, wherever it is written in a site block, with no order option.
func TestDirectiveOrder(t *testing.T) {
	caddytest.AssertAdapt(t, `:8080 {
	reverse_proxy localhost:9000
	respond /health "ok"
	basic_auth /private/* {
		bob $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
	}
	request_header X-Seen yes
	key_auth {
		consumers file consumers.json
	}
}
`, "caddyfile", `{
	"apps": {
		"http": {
			"servers": {
				"srv0": {
					"listen": [
						":8080"
					],
					"routes": [
						{
							"handle": [
								{
									"consumers": {
										"path": "consumers.json",
										"source": "file"
									},
									"handler": "key_auth"
								}
							]
						},
						{
							"match": [
								{
									"path": [
										"/private/*"
									]
								}
							],
							"handle": [
								{
									"handler": "authentication",
									"providers": {
										"http_basic": {
											"accounts": [
												{
													"password": "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG",
													"username": "bob"
												}
											],
											"hash": {
												"algorithm": "bcrypt"
											},
											"hash_cache": {}
										}
									}
								}
							]
						},
						{
							"handle": [
								{
									"handler": "headers",
									"request": {
										"set": {
											"X-Seen": [
												"yes"
											]
										}
									}
								}
							]
						},
						{
							"match": [
								{
									"path": [
										"/health"
									]
								}
							],
							"handle": [
								{
									"body": "ok",
									"handler": "static_response"
								}
							]
						},
						{
							"handle": [
								{
									"handler": "reverse_proxy",
									"upstreams": [
										{
											"dial": "localhost:9000"
										}
									]
								}
							]
						}
					]
				}
			}
		}
	}
}`)

	// And the same read off the handler chain, without the fixture.
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n\treverse_proxy localhost:9000\n\tbasic_auth {\n\t\tbob $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG\n\t}\n\tkey_auth {\n\t\tconsumers file c.json\n\t}\n}\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Handler string `json:"handler"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	var chain []string
	for _, r := range cfg.Apps.HTTP.Servers["srv0"].Routes {
		for _, h := range r.Handle {
			chain = append(chain, h.Handler)
		}
	}
	if got, want := strings.Join(chain, " "), "key_auth authentication reverse_proxy"; got != want {
		t.Errorf("handler chain = %s, want %s", got, want)
	}
}

// Caddyfile mistakes name file:line of the real file.
func TestAdaptErrorNamesFileAndLine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(":8080 {\n\tkey_auth {\n\t\tconsumers file c.json {\n\t\t\trefresh -1s\n\t\t}\n\t}\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	body, _ := os.ReadFile(path)
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": path})
	if err == nil {
		t.Fatal("no error")
	}
	if want := "refresh must not be negative, at " + path + ":4"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q, want it to contain %q", err, want)
	}
}
