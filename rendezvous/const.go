package rendezvous

import "time"

// aLongTimeAgo is a deadline that has passed, to unblock I/O at once.
var aLongTimeAgo = time.Unix(1, 0)
