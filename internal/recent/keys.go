package recent

// Keys is a Store with an index of unique keys: each key is held by the id
// that last claimed it, for as long as the store keeps that id and the
// id's value satisfies the condition it claimed the key with. It is how
// the backends that run tasks as they are enqueued find the duplicate of a
// unique task. The index never holds more keys than the store keeps ids:
// when the store forgets an id, the key it held is dropped, since without
// the value the key could not make a claim a duplicate. It is safe for
// concurrent use. Create it with NewKeys.
type Keys[V any] struct {
	Store[V]

	held  map[string]holder[V] // key → its holder; guarded by Store.mu
	keyOf map[string]string    // holder id → its key; guarded by Store.mu
}

// holder is the id that holds a key, with the condition its value must
// satisfy for the key to stay held.
type holder[V any] struct {
	id    string
	holds func(V) bool
}

// NewKeys returns a Keys whose store keeps the keep most recently added
// ids (keep ≤ 0 keeps every id, and then every key).
func NewKeys[V any](keep int) *Keys[V] {
	k := &Keys[V]{
		Store: Store[V]{keep: keep, m: map[string]V{}},
		held:  map[string]holder[V]{},
		keyOf: map[string]string{},
	}
	k.forgot = k.drop
	return k
}

// Claim makes id the holder of key and stores v under id (as Put does),
// unless key is held: its holder is still kept and the holds function the
// holder claimed it with reports true for the holder's current value. Then
// Claim changes nothing and returns that value (as stored: copy it before
// handing it out) and true; otherwise it returns the zero V and false.
//
// The check and the store happen under one lock, so that a concurrent
// Claim of key sees v. holds is kept with the key and called under that
// lock, by later claims of key: it must not be nil and must not use k.
func (k *Keys[V]) Claim(key, id string, v V, holds func(V) bool) (V, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if h, ok := k.held[key]; ok {
		if cur, ok := k.m[h.id]; ok && h.holds(cur) {
			return cur, true
		}
		delete(k.keyOf, h.id)
	}
	if old, ok := k.keyOf[id]; ok && old != key {
		delete(k.held, old) // an id holds one key: its latest
	}
	k.put(id, v)
	k.held[key] = holder[V]{id: id, holds: holds}
	k.keyOf[id] = key
	var zero V
	return zero, false
}

// KeyLen returns the number of keys in the index, whether or not their
// holders' values still hold them: never more than Len.
func (k *Keys[V]) KeyLen() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.held)
}

// drop is the store's forgot: it drops the key that id held, if any. It is
// called with Store.mu held.
func (k *Keys[V]) drop(id string) {
	if key, ok := k.keyOf[id]; ok {
		delete(k.keyOf, id)
		delete(k.held, key)
	}
}
