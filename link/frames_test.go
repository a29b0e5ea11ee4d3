package link

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"testing"
)

func frame(typ uint8, flags uint16, id, length uint32, body string) []byte {
	var h frameHeader
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	binary.BigEndian.PutUint32(h[8:12], length)
	return append(h[:], body...)
}

// testFrames is a peer's byte stream with every kind of frame in it: data
// with and without a body, window updates, ping and go away (whose length
// field is no body length).
var testFrames = [][]byte{
	frame(yamuxTypeWindowUpdate, 1, 1, 256<<10, ""),
	frame(yamuxTypeData, 0, 1, 5, "hello"),
	frame(2, 1, 0, 7, ""), // ping
	frame(yamuxTypeData, 2, 3, 0, ""),
	frame(yamuxTypeData, 0, 3, 30, "a body longer than one header."),
	frame(yamuxTypeData, 0, 1, 1, "!"),
	frame(yamuxTypeWindowUpdate, yamuxFlagFIN, 3, 0, ""),
	frame(3, 0, 0, 0, ""), // go away
}

// chunkReader returns its chunks one per Read (at most len(b) of one),
// then EOF.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(b []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(b, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

// TestFrameReaderDropsAtBoundaries feeds frameReader the test frames split
// at every offset (and in chunks of every small size), read through
// buffers of several sizes, and queues a drop before each read in turn.
// What comes out must be the peer's frames, whole and in order, with the
// drop's RST between two of them: the first boundary at or after the point
// where it was queued. Each of the peer's headers must be observed once.
func TestFrameReaderDropsAtBoundaries(t *testing.T) {
	wire := bytes.Join(testFrames, nil)
	boundaries := []int{0} // where each frame starts in wire, and the end
	for _, f := range testFrames {
		boundaries = append(boundaries, boundaries[len(boundaries)-1]+len(f))
	}
	var splits [][][]byte
	for k := range len(wire) + 1 {
		splits = append(splits, [][]byte{wire[:k], wire[k:]})
	}
	for size := 1; size <= 2*yamuxHeaderSize+1; size++ {
		var chunks [][]byte
		for rest := wire; len(rest) > 0; rest = rest[min(size, len(rest)):] {
			chunks = append(chunks, rest[:min(size, len(rest))])
		}
		splits = append(splits, chunks)
	}
	const dropped = 99 // a stream ID the peer's frames do not use
	for si, split := range splits {
		for _, bufSize := range []int{1, 5, yamuxHeaderSize, 13, 64, 4096} {
			for dropAt := 0; ; dropAt++ {
				name := fmt.Sprintf("split%d/buf%d/drop%d", si, bufSize, dropAt)
				queued, ok := readWithDrop(t, name, split, bufSize, dropAt, dropped, wire, boundaries)
				if !ok {
					return
				}
				if !queued {
					break // dropAt is past the last read
				}
			}
		}
	}
}

// readWithDrop runs one case of TestFrameReaderDropsAtBoundaries. It reports
// whether the drop was queued (dropAt was not past the last read) and
// whether the case passed.
func readWithDrop(t *testing.T, name string, split [][]byte, bufSize, dropAt int, dropped uint32, wire []byte, boundaries []int) (queued, ok bool) {
	t.Helper()
	chunks := make([][]byte, len(split))
	copy(chunks, split)
	var observed [][]byte
	fr := &frameReader{
		r:       &chunkReader{chunks: chunks},
		observe: func(h *frameHeader) bool { observed = append(observed, bytes.Clone(h[:])); return false },
	}
	var out []byte
	queuedAt := -1 // offset in wire when the drop was queued
	buf := make([]byte, bufSize)
	for reads := 0; ; reads++ {
		if reads == dropAt {
			fr.drop(dropped)
			queuedAt = len(out)
		}
		n, err := fr.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil || reads > 2*len(wire)+2 {
			t.Errorf("%s: read %d, %v", name, n, err)
			return false, false
		}
	}
	if queuedAt < 0 {
		return false, true
	}

	rst := rstFrame(dropped)
	at := bytes.Index(out, rst[:])
	if at < 0 {
		t.Errorf("%s: drop queued at %d never went in: %x", name, queuedAt, out)
		return true, false
	}
	if rest := append(bytes.Clone(out[:at]), out[at+len(rst):]...); !bytes.Equal(rest, wire) {
		t.Errorf("%s: the peer's frames came out changed:\n got %x\nwant %x", name, rest, wire)
		return true, false
	}
	want := -1 // the first boundary at or after queuedAt
	for _, b := range boundaries {
		if b >= queuedAt {
			want = b
			break
		}
	}
	if at != want {
		t.Errorf("%s: drop queued at %d went in at %d, want %d (frame boundaries %v)", name, queuedAt, at, want, boundaries)
		return true, false
	}
	if len(observed) != len(testFrames) {
		t.Errorf("%s: observed %d headers, want %d", name, len(observed), len(testFrames))
		return true, false
	}
	for i, h := range observed {
		if !bytes.Equal(h, testFrames[i][:yamuxHeaderSize]) {
			t.Errorf("%s: header %d observed as %x, want %x", name, i, h, testFrames[i][:yamuxHeaderSize])
			return true, false
		}
	}
	return true, true
}

// Drops queued together all go in, one after another, at one boundary.
func TestFrameReaderDropsInOrder(t *testing.T) {
	wire := bytes.Join(testFrames, nil)
	fr := &frameReader{r: &chunkReader{chunks: [][]byte{bytes.Clone(wire)}}}
	buf := make([]byte, 7) // the first read ends inside the first header
	n, _ := fr.Read(buf)
	out := bytes.Clone(buf[:n])
	for id := uint32(100); id < 103; id++ {
		fr.drop(id)
	}
	rest, err := io.ReadAll(fr)
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, rest...)
	var want []byte
	want = append(want, testFrames[0]...)
	for id := uint32(100); id < 103; id++ {
		h := rstFrame(id)
		want = append(want, h[:]...)
	}
	want = append(want, wire[len(testFrames[0]):]...)
	if !bytes.Equal(out, want) {
		t.Fatalf("got  %x\nwant %x", out, want)
	}
}
