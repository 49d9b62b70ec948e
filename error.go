package parley

import (
	"errors"
	"fmt"
	"time"
)

// Error codes of SPEC §1. The HTTP layer maps each to one status.
const (
	EInvalidJSON     = "invalid_json"
	EInvalid         = "invalid_request"
	EUnauthorized    = "unauthorized"
	EForbidden       = "forbidden"
	ERoleForbidden   = "role_forbidden"
	ENotFound        = "not_found"
	EMethod          = "method_not_allowed"
	EConflict        = "conflict"
	ETooLarge        = "too_large"
	EUnsupportedType = "unsupported_media_type"
	ERateLimited     = "rate_limited"
	EUnavailable     = "unavailable"
	EInternal        = "internal"
)

// Error is an error that is safe to show to the caller: a machine code and a
// human message. Anything that is not an *Error is reported as internal.
type Error struct {
	Code    string
	Message string
	// Field names the offending request field for invalid_request.
	Field string
	// RetryAfter, when set, becomes the Retry-After header.
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid reports a bad value in the named request field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: EInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err, or EInternal for errors that carry none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// NotFound is the one answer for anything the caller may not see, so that a
// 404 never tells whether the thing exists.
var NotFound = &Error{Code: ENotFound, Message: "not found"}
