package exec

import (
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
)

// lookPath finds the program a command names the way the job's own shell
// would: in the PATH of env, the environment the process starts with, not
// the daemon's. A name with a slash is used as it is (relative to the
// job's directory). As with os/exec, a program found through a relative
// PATH entry (".", or an empty one) is refused rather than run: such an
// entry means the working directory, which is rarely meant; dir is that
// directory.
func lookPath(name string, env []string, dir string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, d := range filepath.SplitList(envValue(env, "PATH")) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, name)
		check := p
		if !filepath.IsAbs(p) && dir != "" {
			check = filepath.Join(dir, p)
		}
		if !isExecutable(check) {
			continue
		}
		if !filepath.IsAbs(p) {
			return "", &osexec.Error{Name: name, Err: osexec.ErrDot}
		}
		return p, nil
	}
	return "", &osexec.Error{Name: name, Err: osexec.ErrNotFound}
}

// envValue is the value of the last entry of env that sets name.
func envValue(env []string, name string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], name+"="); ok {
			return v
		}
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	m := fi.Mode()
	return !m.IsDir() && m&fs.ModePerm&0o111 != 0
}
