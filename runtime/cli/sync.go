package cli

import (
	"io"

	"go.uber.org/zap/zapcore"
)

// writeSyncer adapts w for zap; *os.File already is one.
func writeSyncer(w io.Writer) zapcore.WriteSyncer {
	if ws, ok := w.(zapcore.WriteSyncer); ok {
		return ws
	}
	return zapcore.AddSync(w)
}
