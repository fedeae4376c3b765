package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"time"
)

// csrfField is the name of the hidden form field with the CSRF token.
const csrfField = "csrf_token"

// csrfMaxAge is how long a page's forms stay valid.
const csrfMaxAge = 24 * time.Hour

// csrfToken returns a token for a form served at now: the time and an HMAC
// of it under the handler's key. It is not bound to a session (the
// dashboard has none): a cross-site attacker cannot read it from the page,
// which is what matters, and CrossOriginProtection checks the origin too.
func (h *Handler) csrfToken(now time.Time) string {
	var b [8 + sha256.Size]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.Unix()))
	copy(b[8:], h.csrfMAC(b[:8]))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (h *Handler) csrfMAC(ts []byte) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte("gotasks-dashboard-csrf\x00"))
	m.Write(ts)
	return m.Sum(nil)
}

// csrfValid reports whether tok is a token of this handler, made less than
// csrfMaxAge before now.
func (h *Handler) csrfValid(tok string, now time.Time) bool {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 8+sha256.Size {
		return false
	}
	if !hmac.Equal(b[8:], h.csrfMAC(b[:8])) {
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
		if !h.csrfValid(r.PostFormValue(csrfField), time.Now()) {
			h.forbidden(w, r, "missing or expired CSRF token: reload the page and try again")
			return
		}
		f(w, r)
	}
}

func (h *Handler) forbidden(w http.ResponseWriter, r *http.Request, msg string) {
	h.renderError(w, r, http.StatusForbidden, msg)
}
