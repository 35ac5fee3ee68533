package webhook

// For the tests of package webhook_test.
const MaxBodySnippet = maxBodySnippet

var (
	EncodeHeaderValue = encodeHeaderValue
	RetryableStatus   = retryableStatus
)
