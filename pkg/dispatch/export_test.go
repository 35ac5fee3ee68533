package dispatch

// NotifyChannelForTest is the channel consumers LISTEN on, for the tests
// of package dispatch_test.
const NotifyChannelForTest = notifyChannel
