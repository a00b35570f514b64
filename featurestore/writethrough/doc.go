// Package writethrough keeps a cache consistent with a database for items addressed by
// key, so that reads through it are linearizable per key, also when the cache fails,
// restarts, evicts or races. It knows nothing about features: callers hand it keys and
// pure functions that map each key's current item to its next one. The database
// (DynamoDB) is the source of truth; the cache (ValKey) holds one envelope per key.
// This comment is the protocol's one description; README points here.
//
// # Items and versions
//
// An Item has a Version that increases with every successful write and never goes
// backwards, also across deletion: a write stores max(previous + 1, now in microseconds),
// and a deleted item is replaced by a tombstone (no data) at a higher version. Every
// database write is conditional on the version it read.
//
// # Cache entries
//
// A cache key holds a VALUE (a committed version and its data, servable) or a DIRTY
// marker: the writer tokens in flight with their lease expiries, the newest committed
// (version, data) any writer has published, a horizon before which the entry may not turn
// back into a VALUE, and at most one reader's ticket. All times are the cache server's
// clock, so replicas' clock skew does not matter.
//
// # Update (MARK, COMMIT, PUBLISH)
//
//  1. MARK adds the writer's token with a lease to every key. A VALUE becomes DIRTY,
//     remembering it as the newest. A missing key (never cached, evicted, expired, or lost
//     in a flush or restart) may have lost the tokens of writers still in flight, so it
//     becomes DIRTY with a horizon one maximum lease away, and tokens added before the
//     horizon are "early": they cannot turn the key back into a VALUE. If MARK fails,
//     nothing was written (ErrNotWritten).
//  2. COMMIT reads the current items consistently, asks the mutation for the next ones,
//     runs ASSERT (below), and writes them conditionally on the versions read: one
//     PutItem for one key, or transactions of up to MaxGroupItems puts (and
//     MaxGroupBytes) for many, falling back to one key at a time for keys whose
//     transaction lost a race. A lost race is retried with a fresh read (and ASSERT), a
//     bounded number of times (ErrContention). The commit's deadline counts from before
//     MARK and is shorter than the lease, so no commit can land after its writer's lease
//     has ended. An SDK retry of a conditional put whose first attempt applied fails its
//     condition; when the stored item is not exactly ours, the outcome is unknown
//     (ErrOutcomeUnknown), never "lost the race".
//     ASSERT, between the read and the put, checks that the writer's token is still on
//     each key and, where the entry was lost since MARK (flush, eviction, restart), adds
//     it back as MARK would: early if the entry is recreated, and clearing any reader's
//     ticket. If ASSERT fails, nothing is put (ErrNotWritten).
//  3. PUBLISH removes the writer's token and records newest = max(marker's newest, own).
//     The key becomes a VALUE (the newest) only when the writer's own token was still
//     there, no other token remains (an expired one may belong to a writer that
//     committed and died), and the horizon has passed; otherwise it stays DIRTY. A
//     missing key stays missing. Every write publishes, even one whose mutation changed
//     nothing, so a retry repairs the cache. The last writer out therefore stores the
//     newest version, not its own: with two overlapping writers the first to commit may
//     publish last.
//  4. The write is acknowledged only after PUBLISH. If PUBLISH fails the item is durable,
//     the write answers ErrUnpublished (the caller cannot tell it succeeded), and a
//     background loop (Run) keeps publishing with backoff; until it succeeds, or the
//     lease ends, readers go to the database.
//
// # Read (GET, PREPARE, POPULATE)
//
// A read GETs every key in one pipelined round trip and serves VALUEs. For the rest it
// runs PREPARE, then reads the database consistently in one wave of batched reads, and
// POPULATEs each ticketed key: the value is stored only if the ticket is still there (no
// MARK since PREPARE) or the entry holds an older VALUE, never over a missing key (whose
// state may have been lost since PREPARE). PREPARE grants:
//
//   - nothing while a live token remains;
//   - on a missing key, which it recreates DIRTY with a fresh horizon (its reader is the
//     first since the loss), a fence ticket if the key is hot, and otherwise nothing;
//   - past the horizon, a plain ticket;
//   - before the horizon, a fence ticket to a reader that is hot or not the first since
//     the entry was recreated or marked (the first records that it came), at most one
//     per fence window. The reader must then read with a fence: the database raises the
//     item's version atomically with reading it (FencedRead), and only that item may be
//     populated. Absent items are not fenced (nothing is created), so they wait for the
//     horizon.
//
// A key is hot for a reader when the reader's replica served it from the cache within
// Config.HotWindow. A fence is a database write, so a key read once (cold) first reads
// plainly; a hot key will be read again, and fencing at its first miss heals it with one
// database operation instead of a plain read and then a fence, and with no second
// round of readers waiting. This is what keeps a flush, a restart or an eviction of hot
// keys from sending their readers to the database.
//
// Expired tokens are dropped by PREPARE only: the database read that follows starts after
// their leases ended, so it sees whatever their writers committed. A read whose cache GET
// fails reads the database: reads need only the database; writes need both.
//
// Reads of one replica coalesce: a reader that finds another read of this replica
// between PREPARE and POPULATE on a key waits for it and GETs the key again, serving the
// VALUE if the other read stored one (any VALUE is servable, whenever it was stored), and
// otherwise goes on itself (a bounded number of times). No database read is shared, so no
// reader is answered from a read that began before it did.
//
// # Why reads are linearizable
//
// While any writer that may still commit is in flight, its key is DIRTY: its own token
// is there, or, if the marker was lost, the recreated entry's horizon outlasts every
// lease granted before the loss. A DIRTY key is never served from the cache, so readers
// see the database, which holds every commit. A VALUE therefore equals the newest
// committed version whenever it is served, and POPULATE cannot store a version older than
// one a reader or writer has already exposed: its ticket dies with any MARK or loss, and
// it never goes below the newest recorded in the marker.
//
// A fence ticket lets a reader populate before the horizon, while a writer W whose token
// was lost may still be in flight. Let the reader's PREPARE be at p, its fenced read at f
// (after p) and its POPULATE at q, stored only if no MARK or loss came between p and q.
// Then at p no live token remained and the loss that took W's token came before p. W's
// put is conditional on the version W read. If W read before f, the fence changed the
// version: W's put either landed before f (and the fence returned it) or fails after f
// and W reads again. If W read after f, W's ASSERT runs after f, finds its token gone and
// puts it back: if that is before q it clears the reader's ticket (no populate); if after
// q, it turns the VALUE back into DIRTY before W's put can land. Either way no VALUE is
// served that is older than a committed write. Writers that marked after the loss have a
// live token at p (no ticket), or their lease ended before p (no commit after it).
// Nothing here depends on the reader not being the first since the loss, so the fence
// ticket a hot key's first reader gets is covered too. TestMutationsAreCaught shows the
// checker finds the violations when ASSERT or the version raise is taken out, and when a
// hot key's reader populates after a plain read.
//
// A deleted item keeps its version as a fence of its own: the cache stores an empty
// VALUE at the tombstone's version (with a short TTL that outlasts the longest read), so
// a reader that read the item before the delete cannot put it back.
//
// The cache must run as a cache: no RDB or AOF persistence, since a restart that brought
// back an old snapshot would serve values older than acknowledged writes.
//
// # Replicated caches
//
// A replica promoted after a failover holds what it had received, which may be older
// than what its primary held. The argument above survives that if every MARK and ASSERT
// reached the replica before the writer's put: the cache answers them only after WAIT
// (valkey.Options.Replicas) and refuses otherwise (nothing is put). Then the promoted
// replica holds every acknowledged write's token or a later state, and whatever it lacks
// is a PUBLISH, a POPULATE, a PREPARE or a reader's ticket: a missing PUBLISH leaves the
// key DIRTY (served from the database), and a missing POPULATE, PREPARE or ticket only
// takes away something a reader was allowed to store, whose POPULATE then finds no
// ticket and stores nothing. With several replicas per primary, WAIT must cover the one
// that will be promoted: set Replicas to the number each primary has. Lease expiries and
// horizons are written in the old primary's clock and judged by the new one's, so with
// replicas the clocks of ValKey nodes must agree to within the margin between the lease
// and the write timeout (NTP keeps them within milliseconds); a single node needs only a
// steady clock.
//
// A fence raises the item's version without changing its data, so when two fences of
// one key overlap (a slow fenced read outlasting its window), or a writer whose mutation
// changed nothing publishes after a fence, the cache may hold the same data under a
// lower version than the database. Reads then return that data with the lower version:
// the data never goes backwards, but the version Read reports can, by fences only.
package writethrough
