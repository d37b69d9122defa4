package cli

import (
	"context"
	"errors"
	"os"
	"time"

	"go.uber.org/zap"
)

// EnvShutdownFile names the variable in which the App Service WebJobs
// runner gives a continuous WebJob the path of its shutdown file. To stop
// the job the runner creates that file, waits settings.job's
// stopping_wait_time, then kills the process; `run` drains when the file
// appears exactly as on SIGTERM. Unset (anywhere but a WebJob), nothing
// watches.
const EnvShutdownFile = "WEBJOBS_SHUTDOWN_FILE"

// shutdownFilePoll is how often `run` checks for the shutdown file.
// Polling, not file system notifications: on App Service the file lives on
// the site's shared /home (a network mount on Linux), where inotify misses
// changes, and a check a second costs nothing.
const shutdownFilePoll = time.Second

// errShutdownFile is the cause of a context ended by the shutdown file.
var errShutdownFile = errors.New("the WebJobs shutdown file appeared")

// watchShutdownFile returns a context that ends with parent or as soon as
// a file named path exists, checked at once and then every interval. With
// an empty path it returns parent itself and watches nothing.
//
// A file already there at the start ends the context at once: the runner
// deletes the file before it starts the job, so a file present means a
// stop was asked for while the process was starting, and the host stops
// without taking any message. Either way log gets one line saying so.
// stop ends the watching.
func watchShutdownFile(parent context.Context, path string, interval time.Duration, log *zap.Logger) (ctx context.Context, stop func()) {
	if path == "" {
		return parent, func() {}
	}
	ctx, cancel := context.WithCancelCause(parent)
	exists := func() bool {
		_, err := os.Stat(path)
		return err == nil
	}
	fire := func(atStart bool) {
		msg := "WebJobs shutdown file appeared: stopping as on SIGTERM"
		if atStart {
			msg = "WebJobs shutdown file present at start: stopping at once, as on SIGTERM"
		}
		log.Info(msg, zap.String("env", EnvShutdownFile), zap.String("path", path))
		cancel(errShutdownFile)
	}
	if exists() {
		fire(true)
		return ctx, func() { cancel(nil) }
	}
	log.Info("watching for the WebJobs shutdown file: the host stops as on SIGTERM when it appears",
		zap.String("env", EnvShutdownFile), zap.String("path", path), zap.Duration("poll", interval))
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if exists() {
					fire(false)
					return
				}
			}
		}
	}()
	return ctx, func() { cancel(nil) }
}
