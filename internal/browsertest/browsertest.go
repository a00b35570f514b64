// Package browsertest runs a real headless Chromium for the registry page's tests
// (server/ui, and the server's end-to-end tests), driven through chromedp. Debian's
// chromium is installed by deploy/dev/install.sh; FS_CHROMIUM names another browser.
//
// The browser runs as the machine's probe ran it: headless, without a sandbox or GPU,
// with a fresh profile, and with background networking, component updates, sync and
// QUIC off, so it opens no connection of its own: in a closed network those would be
// refused and slow every page down.
package browsertest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// FindChromium returns the browser to run: $FS_CHROMIUM, or the first of chromium,
// chromium-browser and google-chrome on PATH.
func FindChromium(getenv func(string) string) (string, error) {
	if p := getenv("FS_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium found: run 'make deps' (or 'bash deploy/dev/install.sh browser'), or set FS_CHROMIUM")
}

// Flags are the browser's command-line switches besides the profile directory.
func Flags() []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.WindowSize(1280, 900),
	}
}

// Start runs Chromium for t with a fresh profile in t's temporary directory and returns
// the context of its first tab; the browser stops when t ends. Every action under it
// is bounded by timeout. It fails t when no browser is installed.
func Start(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	bin, err := FindChromium(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	opts := append(Flags(), chromedp.ExecPath(bin), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	tctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
	})
	// The first action starts the browser.
	if err := chromedp.Do(tctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	return tctx
}

// NewSession returns a tab in a new browser context of browser (from Start): its own
// cookies, like a separate private window, so that one test can sign in as several
// identities at once. It closes when t ends.
func NewSession(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("new browser context: %v", err)
	}
	return ctx
}
