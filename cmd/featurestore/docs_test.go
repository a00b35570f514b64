package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEveryFlagIsDocumented: the README's configuration table names every flag and
// environment variable the server reads, so the docs cannot fall behind the code.
func TestEveryFlagIsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	ct := reflect.TypeOf(config{})
	for i := range ct.NumField() {
		f := ct.Field(i)
		flag := f.Tag.Get("flag")
		env, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if flag == "" {
			continue
		}
		if !strings.Contains(readme, "`-"+flag+"`") {
			t.Errorf("README does not document -%s", flag)
		}
		if env != "" && !strings.Contains(readme, "`"+env+"`") {
			t.Errorf("README does not document %s (-%s)", env, flag)
		}
	}
}
