package management

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Lists take RabbitMQ's query parameters: page and page_size (default
// 100, at most 500; with page the reply is the paged object), name (a
// substring, or with use_regex=true a regular expression, matched against
// name), sort (a field, dotted for a nested one) with sort_reverse, and
// columns (comma-separated fields, dotted for nested ones, kept in each
// item). Not yet: disable_stats, lengths_age and the other sampling ones.

const (
	defaultPageSize = 100
	maxPageSize     = 500
)

// listParams are a list request's parameters.
type listParams struct {
	page, pageSize int // page 0: not paged
	name           string
	re             *regexp.Regexp
	sort           []string // a dotted path
	reverse        bool
	columns        [][]string
}

// parseList reads the list parameters, with RabbitMQ's 400 texts.
func parseList(q url.Values) (*listParams, error) {
	lp := &listParams{pageSize: defaultPageSize}
	if s := q.Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, errBadRequest("Pagination parameters are invalid")
		}
		lp.page = n
	}
	if s := q.Get("page_size"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || (lp.page > 0 && n > maxPageSize) {
			return nil, errBadRequest("Pagination parameters are invalid")
		}
		lp.pageSize = n
	}
	lp.name = q.Get("name")
	if lp.name != "" && q.Get("use_regex") == "true" {
		re, err := regexp.Compile(lp.name)
		if err != nil {
			return nil, errBadRequest(fmt.Sprintf("Invalid regular expression: %s", lp.name))
		}
		lp.re = re
	}
	if s := q.Get("sort"); s != "" {
		lp.sort = strings.Split(s, ".")
	}
	lp.reverse = q.Get("sort_reverse") == "true"
	if s := q.Get("columns"); s != "" {
		for _, c := range strings.Split(s, ",") {
			if c = strings.TrimSpace(c); c != "" {
				lp.columns = append(lp.columns, strings.Split(c, "."))
			}
		}
	}
	return lp, nil
}

// item is one list entry: a JSON object.
type item = map[string]any

// reply filters, sorts, pages and trims items and writes them.
func (rq *request) reply(items []item) error {
	lp, err := parseList(rq.r.URL.Query())
	if err != nil {
		return err
	}
	total := len(items)
	if lp.name != "" {
		kept := items[:0:0]
		for _, it := range items {
			n, _ := it["name"].(string)
			if lp.re != nil && lp.re.MatchString(n) || lp.re == nil && strings.Contains(n, lp.name) {
				kept = append(kept, it)
			}
		}
		items = kept
	}
	if lp.sort != nil {
		sort.SliceStable(items, func(i, j int) bool {
			return less(lookup(items[i], lp.sort), lookup(items[j], lp.sort))
		})
	}
	if lp.reverse {
		for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
			items[i], items[j] = items[j], items[i]
		}
	}
	filtered := len(items)
	if lp.page > 0 {
		pages := max(1, int(math.Ceil(float64(filtered)/float64(lp.pageSize))))
		if lp.page > pages {
			return &apiError{400, "page_out_of_range",
				fmt.Sprintf("Page out of range, page: %d page size: %d, len: %d", lp.page, lp.pageSize, filtered)}
		}
		start := (lp.page - 1) * lp.pageSize
		items = items[start:min(start+lp.pageSize, filtered)]
		writeJSON(rq.w, map[string]any{
			"filtered_count": filtered, "item_count": len(items), "items": trim(items, lp.columns),
			"page": lp.page, "page_count": pages, "page_size": lp.pageSize, "total_count": total,
		})
		return nil
	}
	writeJSON(rq.w, trim(items, lp.columns))
	return nil
}

// lookup follows a dotted path into an item (nil when absent).
func lookup(it item, path []string) any {
	var v any = it
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// less orders two JSON values: absent first, then numbers, strings and
// booleans by value, anything else as equal.
func less(a, b any) bool {
	if a == nil || b == nil {
		return a == nil && b != nil
	}
	if x, ok := number(a); ok {
		y, ok := number(b)
		return ok && x < y
	}
	switch x := a.(type) {
	case string:
		y, ok := b.(string)
		return ok && x < y
	case bool:
		y, ok := b.(bool)
		return ok && !x && y
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// trim keeps only the given columns of each item (all without columns).
func trim(items []item, columns [][]string) []item {
	if columns == nil {
		return items
	}
	out := make([]item, len(items))
	for i, it := range items {
		o := item{}
		for _, c := range columns {
			if v := lookup(it, c); v != nil || hasPath(it, c) {
				put(o, c, v)
			}
		}
		out[i] = o
	}
	return out
}

func hasPath(it item, path []string) bool {
	m := it
	for i, k := range path {
		v, ok := m[k]
		if !ok {
			return false
		}
		if i == len(path)-1 {
			return true
		}
		if m, ok = v.(map[string]any); !ok {
			return false
		}
	}
	return false
}

func put(o item, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := o[k].(map[string]any)
		if !ok {
			next = item{}
			o[k] = next
		}
		o = next
	}
	o[path[len(path)-1]] = v
}
