package ui

import (
	"net/http"
)

// viewer is who is looking at a page.
type viewer struct {
	// identity is the policy's identity; "" when there is no access policy.
	identity string
	// authOn: an access policy is in force.
	authOn bool
	// session is the session cookie's value when the identity came from one (it binds
	// the logout form's CSRF token); "" for a certificate.
	session string
}

// mayRead reports whether v may read the named set.
func (h *Handler) mayRead(v viewer, set string) bool {
	return !v.authOn || h.auth.MayRead(v.identity, set)
}

// mayGdpr reports whether v may see deletions.
func (h *Handler) mayGdpr(v viewer) bool {
	return !v.authOn || h.auth.MayGdpr(v.identity)
}

// identify finds the viewer: a verified client certificate first (one the policy does not
// list is refused, as on the gRPC port), then a session cookie. ok is false when there
// is no identity; why says why, for the log.
func (h *Handler) identify(r *http.Request) (v viewer, ok bool, why string) {
	if h.auth == nil {
		return viewer{}, true, ""
	}
	v.authOn = true
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if id, ok := h.auth.IdentifyCertificate(cn); ok {
			v.identity = id
			return v, true, ""
		}
		return v, false, "client certificate not in the access policy"
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return v, false, "no credentials"
	}
	id, err := h.sessions.verify(c.Value, h.clock.Now())
	if err != nil {
		return v, false, err.Error()
	}
	v.identity, v.session = id, c.Value
	return v, true, ""
}

// authenticated wraps a page that needs an identity. Without one, a visitor is sent to
// the token form (with a certificate the policy does not list, refused outright).
func (h *Handler) authenticated(page func(http.ResponseWriter, *http.Request, viewer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok, why := h.identify(r)
		if !ok {
			if why != "no credentials" {
				// Who tried and why, never the secret.
				h.logger.WarnContext(r.Context(), "ui: authentication failed", "peer", peer(r), "path", safePath(r), "reason", why)
			}
			if why == "client certificate not in the access policy" {
				h.renderError(w, r, nil, http.StatusForbidden, "Your client certificate is not in the access policy.")
				return
			}
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
				return
			}
			h.renderError(w, r, nil, http.StatusUnauthorized, "Sign in first.")
			return
		}
		page(w, r, v)
	})
}

// maxFormBytes bounds a posted form: a token and a CSRF token.
const maxFormBytes = 16 << 10

type loginData struct {
	basePage
	CSRF    string
	Problem string
}

// loginForm shows the token form with a fresh CSRF nonce (cookie) and token (field).
func (h *Handler) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, ok, _ := h.identify(r); ok {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	h.renderLogin(w, r, http.StatusOK, "")
}

func (h *Handler) renderLogin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	nonce, token := h.sessions.loginCSRF()
	http.SetCookie(w, cookie(r, csrfCookie, nonce))
	h.render(w, r, status, "login", loginData{basePage: basePage{Title: "Sign in", AuthOn: true}, CSRF: token, Problem: problem})
}

// login checks the CSRF token and the bearer token, and starts a session: the cookie
// holds the identity, signed, never the token.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if h.auth == nil {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		h.renderError(w, r, nil, http.StatusBadRequest, "The form could not be read.")
		return
	}
	nonce := ""
	if c, err := r.Cookie(csrfCookie); err == nil {
		nonce = c.Value
	}
	if !h.sessions.checkLoginCSRF(nonce, r.PostForm.Get("csrf")) {
		h.logger.WarnContext(r.Context(), "ui: authentication failed", "peer", peer(r), "path", safePath(r), "reason", "CSRF token missing or wrong")
		h.renderLogin(w, r, http.StatusForbidden, "The form expired or was not sent by this page. Try again.")
		return
	}
	id, ok := h.auth.IdentifyToken(r.PostForm.Get("token"))
	if !ok {
		h.logger.WarnContext(r.Context(), "ui: authentication failed", "peer", peer(r), "path", safePath(r), "reason", "unknown bearer token")
		h.renderLogin(w, r, http.StatusUnauthorized, "That token is not known.")
		return
	}
	http.SetCookie(w, cookie(r, sessionCookie, h.sessions.issue(id, h.clock.Now())))
	http.SetCookie(w, expired(r, csrfCookie))
	h.logger.InfoContext(r.Context(), "ui: signed in", "identity", id, "peer", peer(r))
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// logout ends a token session; its form carries a CSRF token bound to the session.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request, v viewer) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || !h.sessions.checkLogoutCSRF(v.session, r.PostForm.Get("csrf")) {
		h.renderError(w, r, &v, http.StatusForbidden, "The form expired or was not sent by this page.")
		return
	}
	http.SetCookie(w, expired(r, sessionCookie))
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}
