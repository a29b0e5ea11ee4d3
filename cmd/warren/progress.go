package main

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sirupsen/logrus"
)

// progressFormatter is `warren up`'s log format for a person at a
// terminal: short local times, the message first and aligned, warnings and
// errors marked, and the punching steps (debug lines otherwise) shown as
// they happen, so one sees registration, the NAT type, each peer's punch
// and its link come up. Elsewhere (a file, journald) the plain
// structured lines stay, as tools read them.
type progressFormatter struct {
	// verbose shows every debug line, not only the punching steps: the
	// config asked for debug.
	verbose bool
	color   bool
}

// progressMessages are the debug lines shown at info level: the steps of
// a punch, which a person waiting for a link wants to see.
func progressMessage(msg string) bool {
	return strings.HasPrefix(msg, "punching") || strings.HasSuffix(msg, "punched") || strings.HasPrefix(msg, "relay")
}

func (f *progressFormatter) Format(e *logrus.Entry) ([]byte, error) {
	if e.Level >= logrus.DebugLevel && !f.verbose && !progressMessage(e.Message) {
		return nil, nil // logrus writes nothing for an empty line
	}
	var b bytes.Buffer
	b.WriteString(e.Time.Format("15:04:05.000"))
	b.WriteString("  ")
	mark, color := "", 0
	switch {
	case e.Level <= logrus.ErrorLevel:
		mark, color = "ERROR ", 31
	case e.Level == logrus.WarnLevel:
		mark, color = "warning ", 33
	case e.Message == "link up" || strings.HasPrefix(e.Message, "link upgraded"):
		color = 32
	case e.Level >= logrus.DebugLevel:
		color = 90
	}
	msg := mark + e.Message
	if peer, ok := e.Data["peer"].(string); ok {
		msg += " [" + peer + "]"
	}
	if f.color && color != 0 {
		fmt.Fprintf(&b, "\x1b[%dm%-44s\x1b[0m", color, msg)
	} else {
		fmt.Fprintf(&b, "%-44s", msg)
	}
	for _, k := range slices.Sorted(maps.Keys(e.Data)) {
		if k == "peer" || k == "component" {
			continue
		}
		v := fmt.Sprint(e.Data[k])
		if v == "" {
			continue
		}
		if strings.ContainsAny(v, " \"=") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", k, v)
	}
	return append(bytes.TrimRight(b.Bytes(), " "), '\n'), nil
}
