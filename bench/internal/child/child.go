// Package child runs one system inside a child process of the bench binary
// (see package proto for the protocol), so that each system's CPU time and
// peak RSS are its own.
package child

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jobhost/jobhost/bench/internal/proto"
	"github.com/jobhost/jobhost/bench/internal/workload"
)

// system is one contender.
type system interface {
	// prepare connects (and, for in-memory systems, pre-fills); it must not
	// consume yet.
	prepare(ctx context.Context) error
	// start begins consuming; every message goes through rec.Record.
	start(ctx context.Context) error
	// stop stops consuming and releases everything.
	stop() error
}

var out = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.w, format+"\n", args...)
	out.w.Flush()
}

func fail(err error) {
	b, _ := json.Marshal(proto.ChildResult{Error: err.Error()})
	say("%s %s", proto.Result, b)
	os.Exit(1)
}

// Main is the child's entry point.
func Main() {
	var spec proto.Spec
	if err := json.Unmarshal([]byte(os.Getenv(proto.EnvSpec)), &spec); err != nil {
		fail(fmt.Errorf("bad %s: %w", proto.EnvSpec, err))
	}
	maxID := spec.MaxID
	if maxID <= 0 {
		maxID = max(spec.Target, spec.Prefill, 1)
	}
	rec := workload.NewRecorder(maxID, spec.Target, spec.Latency)
	sink := &logSink{}
	sys, err := newSystem(&spec, rec, sink)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	if err := sys.prepare(ctx); err != nil {
		fail(fmt.Errorf("prepare %s: %w", spec.System, err))
	}

	cmds := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- strings.TrimSpace(sc.Text())
		}
		close(cmds) // parent gone: treat as STOP
	}()
	say(proto.Ready)
	for c := range cmds {
		if c == proto.Go {
			break
		}
	}

	var res proto.ChildResult
	if spec.CPUProfile != "" {
		f, err := os.Create(spec.CPUProfile)
		if err != nil {
			fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fail(err)
		}
	}
	ru0 := rusage()
	res.GoAt = time.Now().UnixNano()
	if err := sys.start(ctx); err != nil {
		fail(fmt.Errorf("start %s: %w", spec.System, err))
	}
	done := (<-chan struct{})(rec.Done)
	ld, load := sys.(*jobhost)
	load = load && spec.Load != ""
	if load {
		done = ld.loadDone()
	}
	var tick <-chan time.Time
	if spec.ProgressEvery > 0 {
		t := time.NewTicker(spec.ProgressEvery)
		defer t.Stop()
		tick = t.C
	}
wait:
	for {
		select {
		case <-done:
			say(proto.Done)
			break wait
		case c, ok := <-cmds:
			if !ok || c == proto.Stop {
				break wait
			}
		case <-tick:
			say("%s %d", proto.Progress, rec.Count())
		}
	}
	res.EndAt = time.Now().UnixNano()
	ru1 := rusage()
	if spec.CPUProfile != "" {
		pprof.StopCPUProfile()
	}
	res.UserSec = tv(ru1.Utime) - tv(ru0.Utime)
	res.SysSec = tv(ru1.Stime) - tv(ru0.Stime)

	stopped := make(chan error, 1)
	go func() { stopped <- sys.stop() }()
	select {
	case err := <-stopped:
		if err != nil {
			sink.note("stop: " + err.Error())
		}
	case <-time.After(30 * time.Second):
		sink.note("stop: did not return within 30 s")
	}
	res.Processed, res.Dups = rec.Count(), rec.Dups()
	res.FirstAt, res.LastAt = rec.First(), rec.Last()
	if spec.IDs {
		res.Bitmap = rec.Bitmap()
	}
	if spec.Latency {
		res.Latencies = rec.Latencies()
	}
	if load {
		ld.loadResult(&res)
	}
	res.Warnings = sink.lines()
	res.PeakRSSKB = vmHWM()
	b, _ := json.Marshal(res)
	say("%s %s", proto.Result, b)
}

// vmHWM is this process's peak resident set size in KiB.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return kb
		}
	}
	return 0
}

func rusage() syscall.Rusage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// logSink discards log lines but keeps (a few) warnings and errors. jobhost
// still encodes every line it logs: only the write is saved.
type logSink struct {
	mu   sync.Mutex
	keep []string
	more int
}

var warnMarks = [][]byte{[]byte(`"level":"warn"`), []byte(`"level":"error"`), []byte(`"level":"dpanic"`)}

func (s *logSink) Write(p []byte) (int, error) {
	// zap's JSON lines start with the level: info and debug lines (almost
	// all) are dismissed without a scan, so the sink costs the host nothing.
	if rest, ok := bytes.CutPrefix(p, []byte(`{"level":"`)); ok && len(rest) > 0 && (rest[0] == 'i' || rest[0] == 'd') {
		return len(p), nil
	}
	// A Load host serves its API to loopback callers only, as meant:
	// that warning is expected.
	if bytes.Contains(p, []byte("HTTP listener started without keys")) {
		return len(p), nil
	}
	for _, m := range warnMarks {
		if bytes.Contains(p, m) {
			s.note(string(bytes.TrimSpace(p)))
			break
		}
	}
	return len(p), nil
}

func (s *logSink) Sync() error { return nil }

func (s *logSink) note(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keep) < 20 {
		if len(line) > 600 {
			line = line[:600] + "…"
		}
		s.keep = append(s.keep, line)
	} else {
		s.more++
	}
}

func (s *logSink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.keep...)
	if s.more > 0 {
		out = append(out, fmt.Sprintf("(%d more)", s.more))
	}
	return out
}

func newSystem(spec *proto.Spec, rec *workload.Recorder, sink *logSink) (system, error) {
	switch spec.System {
	case proto.JobhostAzure, proto.JobhostMem, proto.JobhostMemQueue, proto.JobhostRabbit, proto.JobhostNATS, proto.JobhostRedis, proto.JobhostPostgres:
		return &jobhost{spec: spec, rec: rec, sink: sink}, nil
	case proto.PlainAzqueue:
		return &azqueueLoop{spec: spec, rec: rec, sink: sink}, nil
	case proto.WatermillGoChan:
		return &watermillGoChan{spec: spec, rec: rec, sink: sink}, nil
	case proto.GocloudMem:
		return &gocloudMem{spec: spec, rec: rec, sink: sink}, nil
	case proto.BareDecode:
		return &bare{spec: spec, rec: rec}, nil
	case proto.WatermillAMQP:
		return &watermillAMQP{spec: spec, rec: rec, sink: sink}, nil
	case proto.GocloudRabbit:
		return &gocloudRabbit{spec: spec, rec: rec, sink: sink}, nil
	case proto.WatermillNATS:
		return &watermillNATS{spec: spec, rec: rec, sink: sink}, nil
	case proto.Asynq:
		return &asynqServer{spec: spec, rec: rec, sink: sink}, nil
	case proto.River:
		return &riverClient{spec: spec, rec: rec, sink: sink}, nil
	}
	return nil, fmt.Errorf("unknown system %q", spec.System)
}
