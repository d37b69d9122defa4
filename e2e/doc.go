// Package e2e holds jobhost's browser tests: the web dashboard driven in a
// real headless Chromium (through chromedp) against real drivers (Azurite's
// Storage Queues and Table Storage). It is a module of its own so that the
// main module does not depend on chromedp.
//
//	cd e2e && go test ./...
//
// Chromium is found at JOBHOST_CHROMIUM, else as chromium, chromium-browser
// or google-chrome on PATH; without it the tests skip, or fail when
// JOBHOST_REQUIRE_BROWSER=1 (as CI sets). JOBHOST_SCREENSHOTS=dir writes
// the dashboard's screenshots (docs/img) there.
package e2e
