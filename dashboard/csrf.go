package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"time"
)

// csrfField is the name of the hidden form field with the CSRF token.
const csrfField = "csrf_token"

// csrfMaxAge is how long a page's forms stay valid.
const csrfMaxAge = 24 * time.Hour

// csrfCookie names the cookie that binds the CSRF tokens to one browser:
// a random value the dashboard sets (HttpOnly, SameSite=Lax) the first
// time it serves a page, and that every token is an HMAC of. A token
// copied from one browser's page is refused in another (whose cookie
// differs), so a user of the dashboard cannot hand a working token to a
// cross-site form aimed at somebody else.
const csrfCookie = "gotasks_dashboard_csrf"

// csrfBinding returns the request's binding cookie value, or a new one
// (fresh true) when it has none or a malformed one.
func csrfBinding(r *http.Request) (value string, fresh bool) {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) == 32 {
		if _, err := hex.DecodeString(c.Value); err == nil {
			return c.Value, false
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:]), true
}

// setCSRFCookie sets the binding cookie. Its path is "/": the handler
// does not know the prefix it is mounted under, and the value is only a
// random nonce.
func setCSRFCookie(w http.ResponseWriter, r *http.Request, value string) {
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: value, Path: "/", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode})
}

// csrfToken returns a token for a form served at now to the browser whose
// binding cookie is binding: the time and an HMAC of both under the
// handler's key. CrossOriginProtection checks the origin too.
func (h *Handler) csrfToken(binding string, now time.Time) string {
	var b [8 + sha256.Size]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.Unix()))
	copy(b[8:], h.csrfMAC(binding, b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (h *Handler) csrfMAC(binding string, ts []byte) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte("gotasks-dashboard-csrf\x00"))
	m.Write([]byte(binding))
	m.Write([]byte{0})
	m.Write(ts)
	return m.Sum(nil)
}

// csrfValid reports whether tok is a token of this handler for the
// binding cookie value binding, made less than csrfMaxAge before now.
func (h *Handler) csrfValid(tok, binding string, now time.Time) bool {
	if binding == "" {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 8+sha256.Size {
		return false
	}
	if !hmac.Equal(b[8:], h.csrfMAC(binding, b[:8])) {
		return false
	}
	at := time.Unix(int64(binary.BigEndian.Uint64(b[:8])), 0)
	return now.Sub(at) < csrfMaxAge && at.Sub(now) < time.Minute
}

// post wraps the handler of a POST: refused with 403 in read-only mode,
// across origins, or without a valid CSRF token.
func (h *Handler) post(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.ReadOnly {
			h.forbidden(w, r, "the dashboard is read-only")
			return
		}
		if err := h.cop.Check(r); err != nil {
			h.forbidden(w, r, "cross-origin request refused")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
		if err := r.ParseForm(); err != nil {
			h.renderError(w, r, http.StatusBadRequest, "bad form")
			return
		}
		binding, fresh := csrfBinding(r)
		if fresh {
			binding = "" // no cookie: no token can match
		}
		if !h.csrfValid(r.PostFormValue(csrfField), binding, time.Now()) {
			h.forbidden(w, r, "missing or expired CSRF token: reload the page and try again")
			return
		}
		f(w, r)
	}
}

func (h *Handler) forbidden(w http.ResponseWriter, r *http.Request, msg string) {
	h.renderError(w, r, http.StatusForbidden, msg)
}
