package importer

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

// deckPrefix is the prefix decK requires of the variables a file reads:
// the rest of the environment stays out of a state file.
const deckPrefix = "DECK_"

// renderDeck renders a decK file's templates, ${{ env "DECK_NAME" }}, from
// the import's environment, as decK does before it reads a file: a
// variable that is unset, or not prefixed DECK_, fails the import. Errors
// name the variable, never a value.
func renderDeck(data []byte, lookup func(string) (string, bool)) ([]byte, error) {
	if !bytes.Contains(data, []byte("${{")) {
		return data, nil
	}
	var envErr error
	env := func(name string) (string, error) {
		if !strings.HasPrefix(name, deckPrefix) {
			envErr = fmt.Errorf("the file reads environment variable %s: decK reads only variables prefixed %s", name, deckPrefix)
			return "", envErr
		}
		v, ok := lookup(name)
		if !ok {
			envErr = fmt.Errorf("the file reads environment variable %s, which is not set", name)
			return "", envErr
		}
		return v, nil
	}
	t, err := template.New("file").Delims("${{", "}}").Option("missingkey=error").
		Funcs(template.FuncMap{"env": env}).Parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("rendering the decK template: %w", err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, nil); err != nil {
		if envErr != nil {
			return nil, envErr
		}
		return nil, fmt.Errorf("rendering the decK template: %w", err)
	}
	return out.Bytes(), nil
}

// apisixVar is APISIX's substitution in its configuration files:
// ${{NAME}} or ${{NAME:=default}}, white space allowed inside the braces.
var apisixVar = regexp.MustCompile(`\$\{\{\s*(.*?)\s*\}\}`)

var apisixVarName = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// substitute replaces APISIX's ${{...}} in s. A variable that is unset and
// has no default fails, as APISIX then refuses the file; a set variable,
// even empty, is used.
func substitute(s string, lookup func(string) (string, bool)) (string, bool, error) {
	var err error
	used := false
	out := apisixVar.ReplaceAllStringFunc(s, func(m string) string {
		inner := apisixVar.FindStringSubmatch(m)[1]
		name, def, hasDef := strings.Cut(inner, ":=")
		name = strings.TrimSpace(name)
		if !apisixVarName.MatchString(name) {
			if err == nil {
				err = errors.New("a ${{...}} holds no variable name (want ${{NAME}} or ${{NAME:=default}})")
			}
			return ""
		}
		if v, ok := lookup(name); ok {
			used = true
			return v
		}
		if hasDef {
			used = true
			return strings.TrimSpace(def)
		}
		if err == nil {
			err = fmt.Errorf("environment variable %s is not set, and the file reads it with no default (APISIX would refuse the file)", name)
		}
		return ""
	})
	return out, used, err
}

// substituteTree applies substitute to a decoded JSON file's strings, keys
// included, after parsing, as APISIX does for apisix.json: a value that
// used a variable and reads as a number or a boolean becomes one.
func substituteTree(v any, lookup func(string) (string, bool)) (any, error) {
	switch v := v.(type) {
	case string:
		s, used, err := substitute(v, lookup)
		if err != nil || !used {
			return s, err
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f, nil
		}
		switch s {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
		return s, nil
	case []any:
		for i := range v {
			var err error
			if v[i], err = substituteTree(v[i], lookup); err != nil {
				return nil, err
			}
		}
		return v, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, val := range v {
			nk, _, err := substitute(k, lookup)
			if err != nil {
				return nil, err
			}
			if out[nk], err = substituteTree(val, lookup); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return v, nil
}
