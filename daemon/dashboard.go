package daemon

import (
	_ "embed"
	"net/http"
)

// dashboardPage is the admin listener's page at /: this node, its peers
// with a throughput sparkline each, and its listeners, drawn from
// GET /status every two seconds by a few lines of plain JavaScript. Every
// figure it shows is in /status too.
//
//go:embed dashboard.html
var dashboardPage []byte

func serveDashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The page loads nothing from elsewhere, and no other site may frame it.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(dashboardPage)
}
