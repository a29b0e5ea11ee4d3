package forward

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// chunked reads its data in the given sizes, then EOF.
type chunked struct {
	data  []byte
	sizes []int
}

func (c *chunked) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n, c.sizes = min(n, c.sizes[0]), c.sizes[1:]
	}
	n = copy(b, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func TestCopierCopiesEveryByte(t *testing.T) {
	data := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, tc := range []struct {
		name string
		src  io.Reader
	}{
		{"bulk", bytes.NewReader(data)},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data[:100<<10]))},
		// Bulk switches to the big buffer, the trickle after it back.
		{"bulk then trickle then bulk", &chunked{data: data, sizes: append(
			[]int{smallCopyBuf, bigCopyBuf, bigCopyBuf, 100, 7, 100},
			bigCopyBuf, smallCopyBuf, smallCopyBuf)}},
		{"half reads", iotest.HalfReader(bytes.NewReader(data))},
	} {
		var cp copier
		var dst bytes.Buffer
		want := data
		if tc.name == "one byte at a time" {
			want = data[:100<<10]
		}
		n, err := cp.copy(&dst, tc.src)
		if err != nil || n != int64(len(want)) || !bytes.Equal(dst.Bytes(), want) {
			t.Errorf("%s: copied %d of %d bytes, err %v, equal %v", tc.name, n, len(want), err, bytes.Equal(dst.Bytes(), want))
		}
	}
}

type failWriter struct{ after int }

var errWrite = errors.New("write failed")

func (w *failWriter) Write(b []byte) (int, error) {
	if w.after <= 0 {
		return 0, errWrite
	}
	w.after--
	return len(b), nil
}

func TestCopierStopsAtErrors(t *testing.T) {
	var cp copier
	if _, err := cp.copy(&failWriter{after: 2}, bytes.NewReader(make([]byte, 1<<20))); !errors.Is(err, errWrite) {
		t.Errorf("write error: got %v", err)
	}
	if _, err := cp.copy(io.Discard, iotest.ErrReader(io.ErrUnexpectedEOF)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error: got %v", err)
	}
}
