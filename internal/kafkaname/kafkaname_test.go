package kafkaname_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/edupulse/pulsebus/internal/kafkaname"
)

func TestValidateTopic(t *testing.T) {
	t.Run("accepts", func(t *testing.T) {
		for _, topic := range []string{
			"a", "lessons", "Lessons.v2", "a_b-c.d", "...", ".a", "0", strings.Repeat("x", kafkaname.MaxTopicLen),
		} {
			if err := kafkaname.ValidateTopic(topic); err != nil {
				t.Errorf("ValidateTopic(%q) = %v, want nil", topic, err)
			}
		}
	})
	t.Run("refuses with the broken rule", func(t *testing.T) {
		for _, tc := range []struct {
			topic, want string
		}{
			{"", "invalid topic name: empty"},
			{".", `invalid topic name: "."`},
			{"..", `invalid topic name: ".."`},
			{strings.Repeat("x", kafkaname.MaxTopicLen+1), "invalid topic name: 250 characters, more than 249"},
			{"a b", `invalid topic name: "a b" has the character ' '; use letters, digits, '.', '_' and '-'`},
			{"a/b", `invalid topic name: "a/b" has the character '/'`},
			{"é", `invalid topic name: "é" has the character`},
			{"a\x00", `invalid topic name: "a\x00" has the character '\x00'`},
		} {
			err := kafkaname.ValidateTopic(tc.topic)
			if !errors.Is(err, kafkaname.ErrInvalidTopic) {
				t.Errorf("ValidateTopic(%q) = %v, want an error wrapping ErrInvalidTopic", tc.topic, err)
				continue
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("ValidateTopic(%q) = %q, want it to start with %q", tc.topic, err, tc.want)
			}
		}
	})
}
