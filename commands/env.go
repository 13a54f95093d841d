package commands

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"stq/engine"
)

// callerEnv is the environment `stq enqueue` sends for the job to start
// from (base_env): its own, as the shell gave it. An entry no process could
// read (no "=", an empty name) or that cannot travel as JSON text (not
// valid UTF-8) is left out; of a name given twice the first counts, as
// getenv(3) reads it.
func callerEnv(environ []string) map[string]string {
	env := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || !utf8.ValidString(kv) {
			continue
		}
		if _, seen := env[k]; !seen {
			env[k] = v
		}
	}
	return env
}

// baseEnvHint explains a refusal of the environment stq enqueue sent on its
// own: the user did not ask for it, so say what it is and how to leave it
// out.
func baseEnvHint(err error) error {
	var ee *exitError
	if !errors.As(err, &ee) || ee.hint != "" || !strings.Contains(ee.err.Error(), "base_env") {
		return err
	}
	return &exitError{code: ee.code, err: ee.err,
		hint: "stq enqueue sends this shell's environment for the job to run with; --daemon-env leaves it out (a daemon older than this stq refuses it: restart the daemon)"}
}

// envSummary says in `stq show` what environment a job starts from.
func envSummary(env *engine.BaseEnv) string {
	if env == nil {
		return "the daemon's"
	}
	return fmt.Sprintf("the caller's, %d variables (sha256 %.12s)", env.Vars, env.SHA256)
}
