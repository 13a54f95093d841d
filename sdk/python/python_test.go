// Package python_test runs the Python SDK's unittest suite from `go test`,
// so the one test command of the README covers it too.
package python_test

import (
	"os"
	"os/exec"
	"regexp"
	"testing"
)

// TestPythonSDK runs sdk/python/tests against a daemon the suite builds
// from this tree. Without python3 it is skipped, except in CI, where a
// skipped SDK suite would pass unnoticed.
func TestPythonSDK(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("python3 is not installed; the Python SDK's tests cannot run")
		}
		t.Skip("python3 is not installed")
	}
	cmd := exec.Command(py, "-m", "unittest", "discover", "-s", "tests")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3 -m unittest: %v\n%s", err, out)
	}
	ran := regexp.MustCompile(`Ran (\d+) tests?`).FindSubmatch(out)
	if ran == nil || string(ran[1]) == "0" {
		t.Fatalf("the Python suite ran no test:\n%s", out)
	}
	t.Logf("python3 -m unittest: ran %s tests", ran[1])
}
