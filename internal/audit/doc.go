// Package audit makes pkid's audit trail tamper-evident: a hash chain over
// the audit_events rows, built after the fact by a background Linker and
// checked by Verify (`pkid audit verify`). It holds the canonical encoding,
// the chain arithmetic and the two algorithms; the database is reached only
// through the interfaces declared here (Store, Tx, Reader), which the store
// package implements.
//
// # The chain
//
// Every audit event gets a content hash, SHA-256 of its canonical encoding
// (Canonical: the immutable columns as one canonical JSON object), and a
// chain hash, SHA-256(previous chain hash || content hash), starting from 32
// zero bytes. Ids that were handed out but never committed are linked as gap
// links over a range of ids, hashed the same way (GapContent), so the chain
// accounts for every id from 1 to its head. Changing, removing or inserting
// anything at or below the head changes a content hash or breaks the
// sequence, and Verify names the first event where that shows.
//
// # Why a background linker
//
// The trail is written inside the transactions it records, often in the CTE
// of a larger statement on the issuance hot path, by every node at once.
// Linking at insert time would need each insert to read the previous event's
// chain hash: one lock (or one row) that every issuing transaction waits on
// until the one before it commits, which caps issuance at one commit at a
// time. Instead inserts stay as they were (no lock, no extra round trip) and
// a Linker on every node appends the links later, in id order, one node at a
// time under a transaction-scoped advisory lock. Linking costs about 50 µs
// of one batch transaction per event (some 20,000 events a second on two
// cores, docs/BENCHMARKS.md), off the request path; an event is protected by
// the chain from its link on, normally within a second of its commit (the
// lag is exported as a metric).
//
// # Why linking in id order is safe with concurrent writers
//
// Identity ids are assigned at INSERT but become visible at COMMIT, so id
// N+1 can be visible while id N is still in flight, and N may yet commit or
// roll back. The linker must never link past such a hole while it can still
// be filled, and must record it as a gap once it cannot. It decides without
// clocks:
//
//   - The id sequence hands out values in order (CACHE 1, checked), so a
//     missing id below a visible one was handed out before the visible one
//     was, by a transaction that is still running or has ended.
//   - nextval takes a RowExclusiveLock on the sequence and holds it to the
//     end of the transaction, before the value exists. So right after seeing
//     the hole, the transactions that can still fill it are among those that
//     hold a lock on the sequence at that moment (Tx.IDHolders).
//   - Once every one of those has ended (Tx.Running reports none; locks are
//     released after the commit is visible), a fresh read either shows the
//     missing id or proves it will never exist: the linker records it as a
//     gap and moves on.
//
// New transactions that lock the sequence later cannot be given a missing
// id, so they are not waited for: under constant load the wait ends after
// the longest transaction that was open when the hole was seen, typically
// milliseconds. A transaction left open (idle in transaction) holds the
// chain at its hole, which the lag metric shows; contiguous runs of
// committed events are linked at once.
package audit
