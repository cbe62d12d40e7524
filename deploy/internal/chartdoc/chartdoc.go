// Package chartdoc makes the values table of a chart's README from its
// values.yaml, where each value is documented in helm-docs' form: a
// comment starting with "# --" right above the key, optionally with a type
// hint ("# -- (bool) ..."). A key without one is a section: each key
// inside it must then be documented. So every value is documented where it
// is declared, and the README cannot drift from the values.
package chartdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Markers around the generated table in a README.
const (
	Begin = "<!-- values:begin (generated from values.yaml by `go run ./cmd/chartdoc` in deploy/) -->"
	End   = "<!-- values:end -->"
)

// Row is one documented value.
type Row struct {
	Key, Type, Default, Description string
}

// Rows reads the documented values of a values.yaml, in file order. Every
// key that is not a section must be documented.
func Rows(values []byte) ([]Row, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml is not a mapping")
	}
	var rows []Row
	var errs []error
	var walk func(m *yaml.Node, prefix string)
	walk = func(m *yaml.Node, prefix string) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, v := m.Content[i], m.Content[i+1]
			key := prefix + k.Value
			desc, typ := description(k.HeadComment)
			if desc == "" {
				if v.Kind == yaml.MappingNode && len(v.Content) > 0 {
					walk(v, key+".")
					continue
				}
				errs = append(errs, fmt.Errorf("line %d: %s is not documented (a \"# --\" comment above it)", k.Line, key))
				continue
			}
			var val any
			if err := v.Decode(&val); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				continue
			}
			def, err := json.Marshal(val)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
				continue
			}
			if typ == "" {
				typ = typeOf(v)
			}
			rows = append(rows, Row{Key: key, Type: typ, Default: string(def), Description: desc})
		}
	}
	walk(doc.Content[0], "")
	return rows, errors.Join(errs...)
}

var hint = regexp.MustCompile(`^\((\w+)\)\s*`)

// description reads the "# --" paragraph of a key's head comment: the last
// paragraph, which must start with "# --". It returns the text joined on
// one line and the type hint, if any.
func description(head string) (desc, typ string) {
	paras := strings.Split(strings.TrimSpace(head), "\n\n")
	last := strings.Split(paras[len(paras)-1], "\n")
	first, ok := strings.CutPrefix(strings.TrimSpace(last[0]), "# --")
	if !ok {
		return "", ""
	}
	words := []string{strings.TrimSpace(first)}
	for _, l := range last[1:] {
		words = append(words, strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(l), "#")))
	}
	desc = strings.Join(words, " ")
	if m := hint.FindStringSubmatch(desc); m != nil {
		typ, desc = m[1], desc[len(m[0]):]
	}
	return desc, typ
}

func typeOf(v *yaml.Node) string {
	switch v.Kind {
	case yaml.MappingNode:
		return "object"
	case yaml.SequenceNode:
		return "list"
	}
	switch v.Tag {
	case "!!int":
		return "int"
	case "!!bool":
		return "bool"
	case "!!float":
		return "float"
	case "!!null":
		return "null"
	}
	return "string"
}

// Table renders rows as a Markdown table.
func Table(rows []Row) string {
	var b bytes.Buffer
	b.WriteString("| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n")
	esc := strings.NewReplacer("|", `\|`)
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | `%s` | %s |\n", r.Key, r.Type, esc.Replace(r.Default), esc.Replace(r.Description))
	}
	return b.String()
}

// Update replaces the table between Begin and End in readme.
func Update(readme []byte, table string) ([]byte, error) {
	s := string(readme)
	i, j := strings.Index(s, Begin), strings.Index(s, End)
	if i < 0 || j < i {
		return nil, fmt.Errorf("the README has no %q ... %q markers", Begin, End)
	}
	return []byte(s[:i+len(Begin)] + "\n" + table + s[j:]), nil
}
