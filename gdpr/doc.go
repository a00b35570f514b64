// Package gdpr will hold GDPR deletion: durable jobs, subject tombstones, the worker that
// erases a subject's items through the write-through protocol, and the audit trail. Not
// built yet: the GdprService RPCs answer Unimplemented until it is.
package gdpr
