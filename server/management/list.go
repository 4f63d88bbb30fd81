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

// Lists take RabbitMQ's query parameters, as RabbitMQ 3.10.8 reads them
// (checked with curl): page and page_size (default 100, 1 to 500; with
// page the reply is the paged object, without it page_size and name are
// ignored), name (with page: a case-insensitive substring, or with
// use_regex=true a case-insensitive regular expression, matched against
// name), sort (a field, dotted for a nested one) with sort_reverse, and
// columns (comma-separated fields, dotted for nested ones, kept in each
// item). Not yet: disable_stats. The range parameters (lengths_age and the
// others) are read by the overview, queues, exchanges, channels and vhosts
// (history.go).

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
		invalid := errBadRequest("Pagination parameters are invalid")
		n, err := strconv.Atoi(s)
		if err != nil {
			return nil, invalid
		}
		lp.page = n
		size := q.Get("page_size")
		if size == "" {
			size = "undefined" // RabbitMQ's word in the text
		} else if lp.pageSize, err = strconv.Atoi(size); err != nil {
			return nil, invalid
		}
		if lp.page < 1 || lp.pageSize < 1 || lp.pageSize > maxPageSize {
			return nil, &apiError{400, "invalid_pagination_parameters",
				fmt.Sprintf("Invalid pagination parameters: page number %d, page size %s", lp.page, size)}
		}
		lp.name = q.Get("name")
		if lp.name != "" && q.Get("use_regex") == "true" {
			re, err := regexp.Compile("(?i)" + lp.name)
			if err != nil {
				return nil, invalid
			}
			lp.re = re
		}
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
		lower := strings.ToLower(lp.name)
		for _, it := range items {
			n, _ := it["name"].(string)
			if lp.re != nil && lp.re.MatchString(n) || lp.re == nil && strings.Contains(strings.ToLower(n), lower) {
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
		pages := int(math.Ceil(float64(filtered) / float64(lp.pageSize)))
		if lp.page > max(pages, 1) {
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
		switch m := v.(type) {
		case map[string]any:
			v = m[k]
		case details:
			if k != "rate" {
				return nil
			}
			v = m.Rate
		case rangeDetails: // with the range parameters
			switch {
			case k == "rate":
				v = m.Rate
			case k == "avg_rate" && m.AvgRate != nil:
				v = *m.AvgRate
			case k == "avg" && m.Avg != nil:
				v = *m.Avg
			default:
				return nil
			}
		default:
			return nil
		}
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
