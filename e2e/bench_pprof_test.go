package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// The pprof variant of the daemon that WARREN_BENCH_PPROF runs (see
// bench_streams_test.go), and reading its profiles.

// pprofVariant is cmd/warren with e2e/testdata/pprof/pprof.go overlaid,
// built once per test binary.
func pprofVariant(t testing.TB) string {
	t.Helper()
	bin, err := pprofBin()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

var pprofBin = sync.OnceValues(func() (string, error) {
	src, err := filepath.Abs(filepath.Join("testdata", "pprof", "pprof.go"))
	if err != nil {
		return "", err
	}
	dst, err := filepath.Abs(filepath.Join("..", "cmd", "warren", "zz_pprof.go"))
	if err != nil {
		return "", err
	}
	overlay, err := json.Marshal(map[string]map[string]string{"Replace": {dst: src}})
	if err != nil {
		return "", err
	}
	ov := filepath.Join(filepath.Dir(warrenBin), "pprof-overlay.json")
	if err := os.WriteFile(ov, overlay, 0o644); err != nil {
		return "", err
	}
	return goBuild("warren-pprof", "-overlay", ov, "github.com/warren-p2p/warren/cmd/warren")
})

// memStats is the part of a daemon's runtime.MemStats the benchmark
// reports, with its goroutine count.
type memStats struct {
	heapInuse, stackInuse, goroutines int64
}

// memDelta is the growth of memStats between two readings, per stream.
type memDelta struct {
	heap, stack, goroutines float64
}

func (m memStats) minus(before memStats, n int) memDelta {
	return memDelta{
		heap:       float64(m.heapInuse-before.heapInuse) / float64(n),
		stack:      float64(m.stackInuse-before.stackInuse) / float64(n),
		goroutines: float64(m.goroutines-before.goroutines) / float64(n),
	}
}

// memStatsLine matches the MemStats lines that end a debug=1 heap profile.
var memStatsLine = regexp.MustCompile(`(?m)^# (HeapInuse|Stack) = (\d+)`)

// pprofGet fetches path from a pprof variant's listener at addr.
func pprofGet(addr, path string) ([]byte, error) {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return body, err
}

// saveProfile writes the profile at path to file.
func saveProfile(addr, path, file string) error {
	body, err := pprofGet(addr, path)
	if err != nil {
		return err
	}
	return os.WriteFile(file, body, 0o644)
}

// readMemStats reads a pprof variant's memStats after two forced GCs, and
// when save is set also writes its heap profile there and its goroutines
// beside it (NAME.goroutines.txt: which goroutine, and so whose stack, an
// idle stream keeps). Two GCs, because the first only moves sync.Pool's
// buffers to its victim cache, and a pooled buffer belongs to no stream.
func readMemStats(t testing.TB, addr, save string) memStats {
	t.Helper()
	if _, err := pprofGet(addr, "/debug/pprof/heap?gc=1"); err != nil {
		t.Fatal(err)
	}
	heap, err := pprofGet(addr, "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		t.Fatal(err)
	}
	goroutines, err := pprofGet(addr, "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	var m memStats
	for _, sm := range memStatsLine.FindAllStringSubmatch(string(heap), -1) {
		v, _ := strconv.ParseInt(sm[2], 10, 64)
		if sm[1] == "HeapInuse" {
			m.heapInuse = v
		} else {
			m.stackInuse = v
		}
	}
	first, _, _ := strings.Cut(string(goroutines), "\n")
	m.goroutines, _ = strconv.ParseInt(strings.TrimPrefix(first, "goroutine profile: total "), 10, 64)
	if save != "" {
		if err := saveProfile(addr, "/debug/pprof/heap", save); err != nil {
			t.Fatal(err)
		}
		// Which goroutines an idle stream keeps, and so whose stacks.
		if err := os.WriteFile(strings.TrimSuffix(save, ".heap.pb.gz")+".goroutines.txt", goroutines, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return m
}
