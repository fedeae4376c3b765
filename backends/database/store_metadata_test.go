package database

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// Task metadata (the metadata column): every statement that writes or
// reads a task row carries it.
var storeMetadataCases = []storeCase{
	{"Metadata/RoundTrip", func(t *testing.T, fx *storeFixture) {
		tricky := stTrickyMetadata()
		// One row inserted alone, then a batch with and without metadata;
		// an empty map is stored as NULL and read back as nil.
		single := fx.add(stMetadata(tricky))[0]
		batch := fx.add(stMetadata(map[string]string{"n": "1"}), nil, stMetadata(map[string]string{}),
			stMetadata(map[string]string{"n": "3"}))
		all := append([]*tasks.RawResult{single}, batch...)
		if fx.has(featCopy) {
			copied := []*tasks.RawResult{fx.newRaw(stMetadata(tricky)), fx.newRaw()}
			if err := fx.st.copyIn(fx.ctx, copied, fx.base); err != nil {
				t.Fatalf("copyIn: %v", err)
			}
			all = append(all, copied...)
		}
		want := map[string]map[string]string{}
		for _, r := range all {
			if len(r.Metadata) == 0 {
				r.Metadata = nil
			}
			want[r.ID] = r.Metadata
		}
		wantNull := []string{batch[1].ID, batch[2].ID}
		if fx.has(featCopy) {
			wantNull = append(wantNull, all[len(all)-1].ID)
		}
		var gotNull []string
		for _, r := range all {
			if fx.column(r.ID, "metadata") == "NULL" {
				gotNull = append(gotNull, r.ID)
			}
		}
		stDiff(t, "rows with a NULL metadata column", wantNull, gotNull)

		for _, r := range all {
			stDiff(t, "get "+r.ID, r, fx.get(r.ID))
		}
		got := map[string]map[string]string{}
		page, err := fx.st.adminList(fx.ctx, fx.db, ListParams{}, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			got[r.ID] = r.Metadata
		}
		stDiff(t, "admin list", want, got)
		listed, err := fx.b.List(fx.ctx, Filter{})
		if err != nil {
			t.Fatal(err)
		}
		got = map[string]map[string]string{}
		for _, r := range listed {
			got[r.ID] = r.Metadata
		}
		stDiff(t, "List", want, got)
		ti, err := fx.b.GetTask(fx.ctx, single.ID)
		if err != nil {
			t.Fatal(err)
		}
		stDiff(t, "GetTask", tricky, ti.Metadata)

		rows := fx.claim(now(), 100, "w1")
		got = map[string]map[string]string{}
		for _, r := range rows {
			if r.bad != nil {
				t.Errorf("claimed %s: bad %v", r.ID, r.bad)
			}
			got[r.ID] = r.Metadata
		}
		stDiff(t, "claimed", want, got)
	}},
	{"Metadata/NextRunCarriesIt", func(t *testing.T, fx *storeFixture) {
		md := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		r := fx.add(func(r *tasks.RawResult) { r.Repeat, r.Metadata = time.Hour, md })[0]
		rows := fx.claim(now(), 10, "w1")
		fin := now()
		o := stOutcome(rows[0], tasks.StatusSuccessful, fin, nil)
		o.next = nextRun(o.rec, fin)
		if o.next == nil {
			t.Fatal("no next run of a repeating task")
		}
		if done, err := fx.b.complete(fx.ctx, "w1", "", []*outcome{o}); err != nil || len(done) != 1 {
			t.Fatalf("complete: %d recorded, %v", len(done), err)
		}
		stDiff(t, "metadata of the next run", md, fx.get(o.next.ID).Metadata)
		stDiff(t, "metadata of the run that succeeded", md, fx.get(r.ID).Metadata)
		o.rec.Metadata["traceparent"] = "changed"
		if o.next.Metadata["traceparent"] == "changed" {
			t.Error("the next run shares its metadata map with the run that succeeded")
		}
	}},
	{"Metadata/UnreadableRowComesBackFlagged", func(t *testing.T, fx *storeFixture) {
		// A json column (PostgreSQL) holds valid JSON only; SQLite's text
		// column holds anything.
		broken := map[string][]string{
			"postgres": {`[1, 2]`, `{"a": 1}`, `"text"`},
			"sqlite":   {`not json`, `{"a": 1}`, `[1, 2]`, `{"a": "1"`},
		}[fx.dialect]
		if len(broken) == 0 {
			t.Fatalf("no broken metadata for dialect %s", fx.dialect)
		}
		good := fx.add(func(r *tasks.RawResult) { r.Priority, r.Metadata = 1, map[string]string{"ok": "yes"} })[0]
		badIDs := make([]string, len(broken))
		for i, md := range broken {
			badIDs[i] = fx.add()[0].ID
			fx.exec(`UPDATE gotasks_task SET metadata = $1 WHERE id = $2`, md, badIDs[i])
		}
		// A row whose metadata is the JSON null or an empty object has none.
		nullID := fx.add()[0].ID
		fx.exec(`UPDATE gotasks_task SET metadata = $1 WHERE id = $2`, `null`, nullID)
		emptyID := fx.add()[0].ID
		fx.exec(`UPDATE gotasks_task SET metadata = $1 WHERE id = $2`, `{}`, emptyID)

		rows := fx.claim(now(), 100, "w1")
		byID := map[string]*row{}
		for _, r := range rows {
			byID[r.ID] = r
		}
		if len(rows) != 3+len(broken) {
			t.Fatalf("claimed %v; want every row, the broken ones included", stIDs(rows))
		}
		for _, id := range []string{good.ID, nullID, emptyID} {
			if r := byID[id]; r.bad != nil {
				t.Errorf("%s: bad %v", id, r.bad)
			}
		}
		stDiff(t, "good row's metadata", good.Metadata, byID[good.ID].Metadata)
		for _, id := range []string{nullID, emptyID} {
			if md := byID[id].Metadata; md != nil {
				t.Errorf("%s: metadata %v; want nil", id, md)
			}
		}
		for i, id := range badIDs {
			r := byID[id]
			want := fmt.Sprintf("stored metadata %q of task %s cannot be read", broken[i], id)
			if !stErrorContains(r.bad, want) {
				t.Errorf("%s (%s): bad %v; want an error saying %q", id, broken[i], r.bad, want)
			}
			if r.Metadata != nil || r.Status != tasks.StatusRunning || r.Attempts != 1 || r.workerID.String != "w1" {
				t.Errorf("%s: metadata %v, %s, attempt %d, worker %q; want no metadata and the other columns as claimed",
					id, r.Metadata, r.Status, r.Attempts, r.workerID.String)
			}
		}

		// Read back strictly, such a row is an error that names it, and
		// never a panic.
		for _, id := range badIDs {
			_, err := fx.b.GetResult(fx.ctx, id)
			if !stErrorContains(err, id, "metadata", "cannot be read") {
				t.Errorf("GetResult(%s): %v; want an error that names the row and its metadata", id, err)
			}
		}
		if _, err := fx.b.List(fx.ctx, Filter{}); !stErrorContains(err, "metadata", "cannot be read") {
			t.Errorf("List: %v; want an error that says what cannot be read", err)
		}
	}},
}

// stMetadata sets a result's metadata.
func stMetadata(md map[string]string) func(r *tasks.RawResult) {
	return func(r *tasks.RawResult) { r.Metadata = md }
}

// stTrickyMetadata is metadata with what JSON and SQL must escape or keep:
// quotes, backslashes, control characters, a NUL, HTML, non-ASCII, an
// empty value, a long value.
func stTrickyMetadata() map[string]string {
	return map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		`quote"s`:     `back\slash 'single' "double"`,
		"control":     "tab\t newline\n nul \x00 bell \a",
		"html":        "<b>&amp;</b>",
		"ключ":        "значение 😀",
		"empty":       "",
		"long":        strings.Repeat("x", 4000),
	}
}
