package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"stq/commands"
)

// TestManPage checks the generated page is well-formed roff that names
// every command: groff with every warning on must stay silent, and a page
// missing a command or its header fails.
func TestManPage(t *testing.T) {
	var buf bytes.Buffer
	if err := write(&buf, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if !strings.HasPrefix(page, ".nh\n.TH stq 1") {
		t.Fatalf("no .TH header for stq(1):\n%.200s", page)
	}
	root := commands.CommandTree("")
	want := []string{"completion"} // added by the library when the tree is set up
	for _, c := range root.Commands {
		if !c.Hidden {
			want = append(want, c.Name)
		}
	}
	for _, name := range append(want, "install", "uninstall", "status", "ENVIRONMENT", "FILES", "EXIT STATUS") {
		if !strings.Contains(page, "\n.SH "+name+"\n") && !strings.Contains(page, "\n.SS "+name+"\n") {
			t.Errorf("the page has no section for %q", name)
		}
	}
	if !strings.Contains(page, ".B 5\nThe daemon's token") {
		t.Error("EXIT STATUS does not give exit code 5 its meaning")
	}
	if _, err := exec.LookPath("groff"); err != nil {
		t.Log("groff is not installed: roff checked by structure only")
		return
	}
	cmd := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("groff -ww: %v\n%s", err, out)
	}
	cmd = exec.Command("groff", "-man", "-Tutf8", "-ww", "-z")
	cmd.Stdin = strings.NewReader(page + ".BOGUS \\fX\n")
	if out, _ := cmd.CombinedOutput(); len(out) == 0 {
		t.Error("groff stayed silent on broken roff: the check cannot fail")
	}
}
