package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// Bounds of a captured environment (EnqueueRequest.BaseEnv). A shell holds
// tens to a few hundred variables; these leave room for far more while
// keeping one request under the daemon's request line limit.
const (
	MaxBaseEnvVars  = 4096
	MaxBaseEnvBytes = 1 << 20 // names and values, plus 2 bytes per variable
)

// jobEnvNames are the variables the daemon sets for every attempt (see
// jobEnv). A captured environment drops them: a shell inside a job has them
// set, they would be overridden anyway, and keeping them would make every
// environment captured inside a job a different one to store.
var jobEnvNames = []string{"STQ_JOB_ID", "STQ_QUEUE", "STQ_TYPE", "STQ_SUBJECT", "STQ_GENERATION", "STQ_ATTEMPT"}

// BaseEnv is the environment a job starts from instead of the daemon's: the
// enqueuing client's, captured when it asked. Identical environments have
// the same digest, and a store keeps one copy of each.
//
// Its JSON form, the job's base_env member, is only the digest and the
// count: a job object never carries the whole environment.
type BaseEnv struct {
	// SHA256 is the hex SHA-256 of Encoded.
	SHA256 string `json:"sha256"`
	// Vars is the number of variables.
	Vars int `json:"vars"`
	// Encoded is the canonical encoding, in the form of environ(7) and
	// /proc/PID/environ: a "NAME=value" entry per variable in name order,
	// each ended by a NUL byte. A name holds no "=" and neither a name
	// nor a value holds a NUL, so it reads back unambiguously. Set on jobs
	// being enqueued (EncodeBaseEnv) and on claimed ones (DecodeBaseEnv).
	Encoded []byte `json:"-"`
	// List is the environment as "NAME=value" entries in name order. Set
	// on claimed jobs (DecodeBaseEnv); nil on a claimed job means the store
	// lost the environment, and the attempt must not run.
	List []string `json:"-"`
}

// EncodeBaseEnv captures vars, without the jobEnvNames, in canonical form.
// vars must hold what validation lets through (names without "=", no NUL
// anywhere); nil is the empty environment.
func EncodeBaseEnv(vars map[string]string) *BaseEnv {
	keys := make([]string, 0, len(vars))
	size := 0
	for k, v := range vars {
		if slices.Contains(jobEnvNames, k) {
			continue
		}
		keys = append(keys, k)
		size += len(k) + len(v) + 2
	}
	slices.Sort(keys)
	enc := make([]byte, 0, size)
	for _, k := range keys {
		enc = append(enc, k...)
		enc = append(enc, '=')
		enc = append(enc, vars[k]...)
		enc = append(enc, 0)
	}
	sum := sha256.Sum256(enc)
	return &BaseEnv{SHA256: hex.EncodeToString(sum[:]), Vars: len(keys), Encoded: enc}
}

// DecodeBaseEnv reads an environment EncodeBaseEnv encoded, with List set.
func DecodeBaseEnv(encoded []byte) (*BaseEnv, error) {
	list := make([]string, 0, bytes.Count(encoded, []byte{0}))
	for rest := encoded; len(rest) > 0; {
		entry, after, ok := bytes.Cut(rest, []byte{0})
		if !ok || bytes.IndexByte(entry, '=') <= 0 {
			return nil, fmt.Errorf("decode environment: entry %d is not NAME=value followed by a NUL byte", len(list)+1)
		}
		list = append(list, string(entry))
		rest = after
	}
	sum := sha256.Sum256(encoded)
	return &BaseEnv{SHA256: hex.EncodeToString(sum[:]), Vars: len(list), Encoded: encoded, List: list}, nil
}

// checkBaseEnv validates a captured environment as validate does env:
// names not empty and without "=", no NUL, valid UTF-8, within the bounds.
// The jobEnvNames are allowed: EncodeBaseEnv drops them.
func checkBaseEnv(vars map[string]string) error {
	if len(vars) > MaxBaseEnvVars {
		return fmt.Errorf("%w: base_env has %d variables, over the limit of %d", ErrInvalid, len(vars), MaxBaseEnvVars)
	}
	size := 0
	for k, v := range vars {
		if k == "" || strings.IndexByte(k, '=') >= 0 {
			return fmt.Errorf("%w: base_env: invalid environment variable name %q", ErrInvalid, k)
		}
		if strings.IndexByte(k, 0) >= 0 || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%w: base_env %s contains a NUL byte", ErrInvalid, k)
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("%w: base_env %q is not valid UTF-8", ErrInvalid, k)
		}
		size += len(k) + len(v) + 2
	}
	if size > MaxBaseEnvBytes {
		return fmt.Errorf("%w: base_env is %d bytes, over the limit of %d", ErrInvalid, size, MaxBaseEnvBytes)
	}
	return nil
}

// envMemo encodes the base environments of one batch. Its requests usually
// share one map (dev.enqueue_many.v1's base_env is given once for all of
// them), which is then encoded and hashed once. It only lives for one call:
// the caller cannot change a map while the call runs.
type envMemo struct {
	ptr unsafe.Pointer
	env *BaseEnv
}

// encode is EncodeBaseEnv, remembering the last map; a nil memo remembers
// nothing.
func (m *envMemo) encode(vars map[string]string) *BaseEnv {
	if m == nil {
		return EncodeBaseEnv(vars)
	}
	p := reflect.ValueOf(vars).UnsafePointer()
	if m.env == nil || p != m.ptr {
		m.ptr, m.env = p, EncodeBaseEnv(vars)
	}
	return m.env
}

// ProcessEnv is the environment the attempt's process starts with: the
// job's base environment (r.BaseEnv), or daemon when it brought none, with
// r.Env on top. Each name appears once, where it first appeared, with the
// last value given for it; the STQ_* variables come last in r.Env, so they
// always win.
func (r *Run) ProcessEnv(daemon []string) []string {
	base := daemon
	if r.BaseEnv != nil {
		base = r.BaseEnv
	}
	out := make([]string, 0, len(base)+len(r.Env))
	at := make(map[string]int, len(base)+len(r.Env))
	for _, list := range [2][]string{base, r.Env} {
		for _, kv := range list {
			name, _, ok := strings.Cut(kv, "=")
			if !ok || name == "" {
				continue // not a variable a process could read
			}
			if i, seen := at[name]; seen {
				out[i] = kv
				continue
			}
			at[name] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// list is b.List; nil without a base environment.
func (b *BaseEnv) list() []string {
	if b == nil {
		return nil
	}
	return b.List
}

// usable refuses a claimed job whose base environment the store could not
// give back: running it with another environment would be wrong, and no
// retry can bring the environment back.
func (b *BaseEnv) usable() error {
	if b != nil && b.List == nil {
		return fmt.Errorf("the job's captured environment (sha256 %.12s) is missing from the store: %w", b.SHA256, ErrPermanent)
	}
	return nil
}
