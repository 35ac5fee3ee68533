package cli

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// noValue is how a documentation table shows an empty default or no
// environment variable.
const noValue = "–"

var (
	docFlagName = regexp.MustCompile("`--([a-z0-9-]+)`")
	docEnvName  = regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
)

// CheckFlagTables reports how the Markdown tables under the "### " headings
// of markdown (columns "flag", "env" and "default", in any order, among
// others) differ from the settings: a setting no table lists, a different
// variable or default, and a listed flag that is no setting. Tests call it
// to keep a README's configuration reference true.
//
// A row may list several flags ("`--log-format`, `--log-level`"), with a
// variable each and one default for all or one each, comma-separated.
// Backticks are ignored, and "–" stands for an empty default or no
// variable. Defaults are compared as registered, secret settings' too (a
// default is never the secret). described maps a flag to the words the
// table shows instead of an empty or zero default that stands for
// something worked out at run time ("hostname-pid-random", "required").
func (ss *Settings) CheckFlagTables(markdown string, described map[string]string, headings ...string) error {
	docs, errs := flagTables(markdown, headings)
	for _, s := range ss.list {
		d, ok := docs[s.name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: not documented under %q", s.label(), headings))
			continue
		}
		delete(docs, s.name)
		if d.env != s.env {
			errs = append(errs, fmt.Errorf("--%s: documented variable %q, registered %q", s.name, d.env, s.env))
		}
		want := s.def
		if words, ok := described[s.name]; ok {
			if !slices.Contains([]string{"", "0", "0s"}, s.def) {
				errs = append(errs, fmt.Errorf("--%s: documented default %q stands for an empty one, but the registered default is %q", s.name, words, s.def))
			}
			want = words
		} else if want == "" {
			want = noValue
		}
		if d.def != want {
			shown := ""
			if want != s.def {
				shown = fmt.Sprintf(" (to be shown as %q)", want)
			}
			errs = append(errs, fmt.Errorf("--%s: documented default %q, registered %q%s", s.name, d.def, s.def, shown))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		errs = append(errs, fmt.Errorf("--%s: documented under %q but not a flag of this command", name, docs[name].heading))
	}
	return errors.Join(errs...)
}

// docFlag is one flag as a table documents it.
type docFlag struct{ env, def, heading string }

// flagTables reads the flags of the tables under headings.
func flagTables(markdown string, headings []string) (map[string]docFlag, []error) {
	docs := map[string]docFlag{}
	var errs []error
	for _, h := range headings {
		rows := tableUnder(markdown, h)
		col := map[string]int{}
		if len(rows) > 0 {
			for i, c := range rows[0] {
				col[plain(c)] = i
			}
		}
		fc, okF := col["flag"]
		ec, okE := col["env"]
		dc, okD := col["default"]
		if !okF || !okE || !okD {
			errs = append(errs, fmt.Errorf("### %s: no table with columns flag, env and default", h))
			continue
		}
		for _, r := range rows[min(2, len(rows)):] { // after the header and its |---| line
			if len(r) <= max(fc, ec, dc) {
				errs = append(errs, fmt.Errorf("### %s: row %q is short of cells", h, r))
				continue
			}
			names, envs := captures(docFlagName, r[fc]), captures(docEnvName, r[ec])
			if plain(r[ec]) == noValue {
				envs = make([]string, len(names))
			}
			defs := []string{r[dc]}
			if parts := strings.Split(r[dc], ","); len(names) > 1 && len(parts) == len(names) {
				defs = parts
			}
			if len(names) == 0 || len(envs) != len(names) {
				errs = append(errs, fmt.Errorf("### %s: row %q: want one or more `--flag`s and a `VARIABLE` (or –) each", h, r))
				continue
			}
			for i, n := range names {
				if d, dup := docs[n]; dup {
					errs = append(errs, fmt.Errorf("--%s: documented twice, under %q and %q", n, d.heading, h))
				}
				docs[n] = docFlag{env: envs[i], def: plain(defs[min(i, len(defs)-1)]), heading: h}
			}
		}
	}
	return docs, errs
}

// tableUnder returns the cells of the first table in the section under
// heading ("### " + heading), header row first.
func tableUnder(markdown, heading string) [][]string {
	var rows [][]string
	in := false
	for _, line := range strings.Split(markdown, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "### "+heading:
			in = true
		case !in:
		case strings.HasPrefix(line, "|"):
			line = strings.ReplaceAll(strings.Trim(line, "|"), `\|`, "\x00")
			var cells []string
			for _, c := range strings.Split(line, "|") {
				cells = append(cells, strings.ReplaceAll(c, "\x00", "|"))
			}
			rows = append(rows, cells)
		case len(rows) > 0 || strings.HasPrefix(line, "#"):
			return rows
		}
	}
	return rows
}

// captures returns the first group of every match of re in s.
func captures(re *regexp.Regexp, s string) []string {
	var out []string
	for _, m := range re.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// plain is a cell's text without backticks and surrounding spaces.
func plain(cell string) string {
	return strings.TrimSpace(strings.ReplaceAll(cell, "`", ""))
}
