package tchannelmock

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// EnvVar names the environment variable that gives the binary's path.
const EnvVar = "TCHANNEL_MOCK_BIN"

const binaryName = "tchannel-mock"

// Binary is where tchannel-mock was found: Source is "argument", EnvVar or "PATH".
type Binary struct {
	Path   string
	Source string
}

// NotFoundError lists every place FindBinary looked.
type NotFoundError struct {
	Tried []string
}

func (e *NotFoundError) Error() string {
	return "cannot find " + binaryName + "; tried " + strings.Join(e.Tried, "; ")
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// FindBinary looks at explicit, then $TCHANNEL_MOCK_BIN, then PATH. getenv
// reads the environment (nil: os.Getenv).
func FindBinary(explicit string, getenv func(string) string) (Binary, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var tried []string
	if explicit != "" {
		if isExecutable(explicit) {
			return Binary{absPath(explicit), "argument"}, nil
		}
		tried = append(tried, "argument: "+explicit+" (not an executable file)")
	} else {
		tried = append(tried, "argument: not given")
	}
	if v := getenv(EnvVar); v != "" {
		if isExecutable(v) {
			return Binary{absPath(v), EnvVar}, nil
		}
		tried = append(tried, EnvVar+"="+v+" (not an executable file)")
	} else {
		tried = append(tried, EnvVar+": not set")
	}
	var dirs []string
	for _, d := range filepath.SplitList(getenv("PATH")) {
		if d == "" {
			continue
		}
		dirs = append(dirs, d)
		if c := filepath.Join(d, binaryName); isExecutable(c) {
			return Binary{c, "PATH"}, nil
		}
	}
	in := strings.Join(dirs, string(os.PathListSeparator))
	if in == "" {
		in = "(empty)"
	}
	tried = append(tried, "PATH: no "+binaryName+" in "+in)
	return Binary{}, &NotFoundError{Tried: tried}
}

// features are the newer options a binary's --help lists.
type features struct {
	exitOnStdinEOF bool
	adminTokenFile bool
	cassetteRoot   bool
}

var featureCache sync.Map // path -> features

func featuresOf(path string) (features, error) {
	if f, ok := featureCache.Load(path); ok {
		return f.(features), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--help").Output()
	if err != nil {
		return features{}, fmt.Errorf("%s --help failed: %w", path, err)
	}
	f := features{
		exitOnStdinEOF: strings.Contains(string(out), "--exit-on-stdin-eof"),
		adminTokenFile: strings.Contains(string(out), "--admin-token-file"),
		cassetteRoot:   strings.Contains(string(out), "--cassette-root"),
	}
	featureCache.Store(path, f)
	return f, nil
}
