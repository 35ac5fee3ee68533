package typepattern_test

import (
	"testing"

	"github.com/edupulse/pulsebus/internal/typepattern"
)

func TestParse(t *testing.T) {
	t.Run("accepts", func(t *testing.T) {
		for _, tc := range []struct {
			in   string
			want typepattern.Pattern
		}{
			{"*", typepattern.Pattern{All: true}},
			{"lesson.*", typepattern.Pattern{Prefix: "lesson."}},
			{"a.*", typepattern.Pattern{Prefix: "a."}},
			{"a.b.*", typepattern.Pattern{Prefix: "a.b."}},
			{"..*", typepattern.Pattern{Prefix: ".."}},
			{"lesson.created", typepattern.Pattern{Exact: "lesson.created"}},
			{"x", typepattern.Pattern{Exact: "x"}},
		} {
			got, err := typepattern.Parse(tc.in)
			if err != nil || got != tc.want {
				t.Errorf("Parse(%q) = %+v, %v; want %+v, nil", tc.in, got, err, tc.want)
			}
		}
	})
	t.Run("refuses a '*' that is not the whole pattern or a final .*", func(t *testing.T) {
		for _, in := range []string{"", ".*", "**", "qu*z", "*.created", "lesson*", "a*.*", "*.*", "a.**"} {
			_, err := typepattern.Parse(in)
			want := `event type pattern "` + in + `": want an exact type, prefix.* or *`
			if err == nil || err.Error() != want {
				t.Errorf("Parse(%q) error = %v, want %q", in, err, want)
			}
		}
	})
}
