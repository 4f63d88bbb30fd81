// Command gen generates shared/amqp/spec_gen.go from the AMQP 0-9-1 spec XML.
//
// It reads spec/amqp0-9-1.stripped.extended.xml (RabbitMQ's extended spec as
// shipped by Debian's amqp-specs) and merges spec/rabbitmq-additions.xml
// (RabbitMQ extensions missing from that file) into it. It is run from the
// shared/amqp directory by "go generate" (see generate.go):
//
//	//go:generate go run ./internal/gen
//
// Flags allow other input and output paths, which the tests of this command
// do not need; the defaults are what go generate uses.
package main

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"sort"
	"strconv"
	"strings"
)

type specXML struct {
	Constants []constantXML `xml:"constant"`
	Domains   []domainXML   `xml:"domain"`
	Classes   []classXML    `xml:"class"`
}

type constantXML struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
	Class string `xml:"class,attr"`
}

type domainXML struct {
	Name string `xml:"name,attr"`
	Type string `xml:"type,attr"`
}

type classXML struct {
	Name    string      `xml:"name,attr"`
	Index   int         `xml:"index,attr"`
	Methods []methodXML `xml:"method"`
}

type methodXML struct {
	Name        string     `xml:"name,attr"`
	Index       int        `xml:"index,attr"`
	Synchronous string     `xml:"synchronous,attr"`
	Content     string     `xml:"content,attr"`
	Deprecated  string     `xml:"deprecated,attr"`
	Fields      []fieldXML `xml:"field"`
}

type fieldXML struct {
	Name     string `xml:"name,attr"`
	Domain   string `xml:"domain,attr"`
	Type     string `xml:"type,attr"`
	Reserved string `xml:"reserved,attr"`
}

// baseTypes are the AMQP primitive types and their Go types.
var baseTypes = map[string]string{
	"bit":       "bool",
	"octet":     "uint8",
	"short":     "uint16",
	"long":      "uint32",
	"longlong":  "uint64",
	"shortstr":  "string",
	"longstr":   "string",
	"timestamp": "uint64",
	"table":     "Table",
}

// fieldNameOverrides renames fields whose natural Go name would collide with
// a method of the Method interface (a Go struct cannot have a field and a
// method of the same name). Keyed by "class.method.field".
var fieldNameOverrides = map[string]string{
	"connection.close.class-id":  "FailingClassID",
	"connection.close.method-id": "FailingMethodID",
	"channel.close.class-id":     "FailingClassID",
	"channel.close.method-id":    "FailingMethodID",
}

// constantNameOverrides renames constants whose natural Go name collides with
// a hand-written type of package amqp.
var constantNameOverrides = map[string]string{
	"frame-error": "FrameErrorCode", // type FrameError is the frame-level error
}

// interfaceMethods are the names a generated field must not take.
var interfaceMethods = map[string]bool{
	"ClassID": true, "MethodID": true, "MethodName": true, "HasContent": true,
	"Synchronous": true, "AppendArgs": true, "DecodeArgs": true,
}

func camel(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "-") {
		if part == "" {
			continue
		}
		if part == "id" {
			b.WriteString("ID")
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]))
		b.WriteString(part[1:])
	}
	return b.String()
}

func load(path string) (*specXML, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s specXML
	if err := xml.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// merge adds the constants, domains, classes and methods of add that base
// lacks.
func merge(base, add *specXML) {
	haveConst := map[string]bool{}
	for _, c := range base.Constants {
		haveConst[c.Name] = true
	}
	for _, c := range add.Constants {
		if !haveConst[c.Name] {
			base.Constants = append(base.Constants, c)
		}
	}
	haveDomain := map[string]bool{}
	for _, d := range base.Domains {
		haveDomain[d.Name] = true
	}
	for _, d := range add.Domains {
		if !haveDomain[d.Name] {
			base.Domains = append(base.Domains, d)
		}
	}
	for _, ac := range add.Classes {
		found := false
		for i := range base.Classes {
			bc := &base.Classes[i]
			if bc.Name != ac.Name {
				continue
			}
			found = true
			have := map[string]bool{}
			for _, m := range bc.Methods {
				have[m.Name] = true
			}
			for _, m := range ac.Methods {
				if !have[m.Name] {
					bc.Methods = append(bc.Methods, m)
				}
			}
		}
		if !found {
			base.Classes = append(base.Classes, ac)
		}
	}
}

type genField struct {
	renamed bool // goName comes from fieldNameOverrides
	xmlName string
	goName  string
	amqp    string // base type
	goType  string
}

type genMethod struct {
	class, name string // XML names
	goName      string
	classID     int
	methodID    int
	sync        bool
	content     bool
	deprecated  bool
	fields      []genField
}

func resolve(s *specXML) ([]genMethod, error) {
	domains := map[string]string{}
	for _, d := range s.Domains {
		domains[d.Name] = d.Type
	}
	var out []genMethod
	seen := map[string]bool{}
	for _, c := range s.Classes {
		for _, m := range c.Methods {
			gm := genMethod{
				class:      c.Name,
				name:       m.Name,
				goName:     camel(c.Name) + camel(m.Name),
				classID:    c.Index,
				methodID:   m.Index,
				sync:       m.Synchronous == "1",
				content:    m.Content == "1",
				deprecated: m.Deprecated == "1",
			}
			if seen[gm.goName] {
				return nil, fmt.Errorf("duplicate method %s", gm.goName)
			}
			seen[gm.goName] = true
			for _, f := range m.Fields {
				typ := f.Type
				if typ == "" {
					var ok bool
					typ, ok = domains[f.Domain]
					if !ok {
						return nil, fmt.Errorf("%s.%s: field %s: unknown domain %q", c.Name, m.Name, f.Name, f.Domain)
					}
				}
				// Domains may (in principle) refer to other domains.
				for i := 0; i < 10; i++ {
					if _, ok := baseTypes[typ]; ok {
						break
					}
					if next, ok := domains[typ]; ok {
						typ = next
					}
				}
				goType, ok := baseTypes[typ]
				if !ok {
					return nil, fmt.Errorf("%s.%s: field %s: unresolvable type %q", c.Name, m.Name, f.Name, typ)
				}
				name := camel(f.Name)
				o, renamed := fieldNameOverrides[c.Name+"."+m.Name+"."+f.Name]
				if renamed {
					name = o
				}
				if interfaceMethods[name] {
					return nil, fmt.Errorf("%s.%s: field %s collides with a Method interface method; add an override", c.Name, m.Name, name)
				}
				gm.fields = append(gm.fields, genField{renamed: renamed, xmlName: f.Name, goName: name, amqp: typ, goType: goType})
			}
			out = append(out, gm)
		}
	}
	return out, nil
}

type writer struct{ bytes.Buffer }

func (w *writer) p(format string, args ...any) {
	fmt.Fprintf(&w.Buffer, format, args...)
	w.WriteByte('\n')
}

func generate(s *specXML, sources []string) ([]byte, error) {
	methods, err := resolve(s)
	if err != nil {
		return nil, err
	}
	w := &writer{}
	w.p("// Code generated by go run ./internal/gen from %s. DO NOT EDIT.", strings.Join(sources, " and "))
	w.p("")
	w.p("package amqp")
	w.p("")
	w.p(`import "encoding/binary"`)
	w.p("")

	// Constants.
	var frameConsts, replyConsts []constantXML
	for _, c := range s.Constants {
		if strings.HasPrefix(c.Name, "frame-") && c.Name != "frame-error" {
			frameConsts = append(frameConsts, c)
		} else {
			replyConsts = append(replyConsts, c)
		}
	}
	sort.SliceStable(replyConsts, func(i, j int) bool {
		a, _ := strconv.Atoi(replyConsts[i].Value)
		b, _ := strconv.Atoi(replyConsts[j].Value)
		return a < b
	})
	constName := func(c constantXML) string {
		if o, ok := constantNameOverrides[c.Name]; ok {
			return o
		}
		return camel(c.Name)
	}
	w.p("// Frame constants from the spec's <constant> elements.")
	w.p("const (")
	for _, c := range frameConsts {
		v := c.Value
		if c.Name == "frame-end" {
			n, _ := strconv.Atoi(v)
			v = fmt.Sprintf("0x%X", n)
		}
		w.p("\t// %s is the spec constant %s.", constName(c), c.Name)
		w.p("\t%s = %s", constName(c), v)
	}
	w.p(")")
	w.p("")
	w.p("// Reply codes from the spec's <constant> elements, for connection.close,")
	w.p("// channel.close and basic.return.")
	w.p("const (")
	for _, c := range replyConsts {
		kind := ""
		if c.Class != "" {
			kind = " (" + c.Class + ")"
		}
		w.p("\t// %s is reply code %s, %s%s.", constName(c), c.Value, replyName(c.Name), kind)
		w.p("\t%s = %s", constName(c), c.Value)
	}
	w.p(")")
	w.p("")
	w.p("// ReplyCodeName returns the upper-case name RabbitMQ uses for a reply code in")
	w.p("// close reply texts (e.g. \"NOT_FOUND\" for 404), or \"\" for an unknown code.")
	w.p("func ReplyCodeName(code uint16) string {")
	w.p("\tswitch code {")
	for _, c := range replyConsts {
		w.p("\tcase %s:", c.Value)
		w.p("\t\treturn %q", replyName(c.Name))
	}
	w.p("\t}")
	w.p("\treturn \"\"")
	w.p("}")
	w.p("")
	w.p("// IsHardError reports whether the spec classes a reply code as a hard error,")
	w.p("// i.e. one that closes the connection rather than only the channel.")
	w.p("func IsHardError(code uint16) bool {")
	w.p("\tswitch code {")
	var hard []string
	for _, c := range replyConsts {
		if c.Class == "hard-error" {
			hard = append(hard, c.Value)
		}
	}
	w.p("\tcase %s:", strings.Join(hard, ", "))
	w.p("\t\treturn true")
	w.p("\t}")
	w.p("\treturn false")
	w.p("}")
	w.p("")

	// Class constants.
	classes := append([]classXML(nil), s.Classes...)
	sort.SliceStable(classes, func(i, j int) bool { return classes[i].Index < classes[j].Index })
	w.p("// Class IDs.")
	w.p("const (")
	for _, c := range classes {
		w.p("\t// Class%s is the class ID of the %s class.", camel(c.Name), c.Name)
		w.p("\tClass%s = %d", camel(c.Name), c.Index)
	}
	w.p(")")
	w.p("")
	w.p("// ClassName returns the spec name of a class (\"basic\"), or \"\" if unknown.")
	w.p("func ClassName(classID uint16) string {")
	w.p("\tswitch classID {")
	for _, c := range classes {
		w.p("\tcase %d:", c.Index)
		w.p("\t\treturn %q", c.Name)
	}
	w.p("\t}")
	w.p("\treturn \"\"")
	w.p("}")
	w.p("")

	// Method structs.
	for _, m := range methods {
		genMethodCode(w, m)
	}

	// Lookup functions.
	w.p("// NewMethod returns a new zero value of the method with the given class and")
	w.p("// method IDs, or nil if there is no such method.")
	w.p("func NewMethod(classID, methodID uint16) Method {")
	w.p("\tswitch uint32(classID)<<16 | uint32(methodID) {")
	for _, m := range methods {
		w.p("\tcase %d<<16 | %d:", m.classID, m.methodID)
		w.p("\t\treturn &%s{}", m.goName)
	}
	w.p("\t}")
	w.p("\treturn nil")
	w.p("}")
	w.p("")
	w.p("// MethodNameOf returns the spec name (\"basic.publish\") of the method with the")
	w.p("// given class and method IDs, or \"\" if there is no such method.")
	w.p("func MethodNameOf(classID, methodID uint16) string {")
	w.p("\tswitch uint32(classID)<<16 | uint32(methodID) {")
	for _, m := range methods {
		w.p("\tcase %d<<16 | %d:", m.classID, m.methodID)
		w.p("\t\treturn %q", m.class+"."+m.name)
	}
	w.p("\t}")
	w.p("\treturn \"\"")
	w.p("}")

	src, err := format.Source(w.Bytes())
	if err != nil {
		return w.Bytes(), fmt.Errorf("gofmt generated code: %w", err)
	}
	return src, nil
}

func replyName(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func genMethodCode(w *writer, m genMethod) {
	full := m.class + "." + m.name
	w.p("// %s is the %s method (class %d, method %d).", m.goName, full, m.classID, m.methodID)
	if m.deprecated {
		w.p("//")
		w.p("// The spec marks %s as deprecated.", full)
	}
	if len(m.fields) == 0 {
		w.p("type %s struct{}", m.goName)
	} else {
		w.p("type %s struct {", m.goName)
		for _, f := range m.fields {
			if f.renamed {
				w.p("\t// %s is the %s argument, renamed because the Method interface", f.goName, f.xmlName)
				w.p("\t// has a %s method: the class/method that caused the close.", camel(f.xmlName))
				w.p("\t%s %s", f.goName, f.goType)
				continue
			}
			w.p("\t%s %s // %s (%s)", f.goName, f.goType, f.xmlName, f.amqp)
		}
		w.p("}")
	}
	w.p("")
	w.p("// ClassID returns %d (%s).", m.classID, m.class)
	w.p("func (*%s) ClassID() uint16 { return %d }", m.goName, m.classID)
	w.p("")
	w.p("// MethodID returns %d.", m.methodID)
	w.p("func (*%s) MethodID() uint16 { return %d }", m.goName, m.methodID)
	w.p("")
	w.p("// MethodName returns %q.", full)
	w.p("func (*%s) MethodName() string { return %q }", m.goName, full)
	w.p("")
	w.p("// HasContent reports whether %s is followed by a content header and body.", full)
	w.p("func (*%s) HasContent() bool { return %v }", m.goName, m.content)
	w.p("")
	w.p("// Synchronous reports whether the spec marks %s as synchronous.", full)
	w.p("func (*%s) Synchronous() bool { return %v }", m.goName, m.sync)
	w.p("")

	// AppendArgs.
	w.p("// AppendArgs appends the encoded arguments of %s to dst.", full)
	if len(m.fields) == 0 {
		w.p("func (*%s) AppendArgs(dst []byte) []byte { return dst }", m.goName)
	} else {
		w.p("func (m *%s) AppendArgs(dst []byte) []byte {", m.goName)
		for i := 0; i < len(m.fields); {
			f := m.fields[i]
			if f.amqp == "bit" {
				j := i
				w.p("\tvar bits%d uint8", i)
				for j < len(m.fields) && m.fields[j].amqp == "bit" && j-i < 8 {
					w.p("\tif m.%s {", m.fields[j].goName)
					w.p("\t\tbits%d |= 1 << %d", i, j-i)
					w.p("\t}")
					j++
				}
				w.p("\tdst = append(dst, bits%d)", i)
				i = j
				continue
			}
			switch f.amqp {
			case "octet":
				w.p("\tdst = append(dst, m.%s)", f.goName)
			case "short":
				w.p("\tdst = binary.BigEndian.AppendUint16(dst, m.%s)", f.goName)
			case "long":
				w.p("\tdst = binary.BigEndian.AppendUint32(dst, m.%s)", f.goName)
			case "longlong", "timestamp":
				w.p("\tdst = binary.BigEndian.AppendUint64(dst, m.%s)", f.goName)
			case "shortstr":
				w.p("\tdst = appendShortstr(dst, m.%s)", f.goName)
			case "longstr":
				w.p("\tdst = appendLongstr(dst, m.%s)", f.goName)
			case "table":
				w.p("\tdst = AppendTable(dst, m.%s)", f.goName)
			default:
				log.Fatalf("unhandled type %s", f.amqp)
			}
			i++
		}
		w.p("\treturn dst")
		w.p("}")
	}
	w.p("")

	// DecodeArgs.
	w.p("// DecodeArgs decodes the arguments of %s from b, which must hold exactly", full)
	w.p("// the encoded arguments. Errors are of type *DecodeError.")
	if len(m.fields) == 0 {
		w.p("func (*%s) DecodeArgs(b []byte) error {", m.goName)
		w.p("\td := decoder{b: b}")
		w.p("\treturn d.finish(%d, %d)", m.classID, m.methodID)
		w.p("}")
	} else {
		w.p("func (m *%s) DecodeArgs(b []byte) error {", m.goName)
		if shareStrings(m) {
			w.p("\td := decoder{b: b, share: true}")
		} else {
			w.p("\td := decoder{b: b}")
		}
		for i := 0; i < len(m.fields); {
			f := m.fields[i]
			if f.amqp == "bit" {
				j := i
				var names []string
				for j < len(m.fields) && m.fields[j].amqp == "bit" && j-i < 8 {
					names = append(names, m.fields[j].xmlName)
					j++
				}
				w.p("\tbits%d := d.octet(%q)", i, strings.Join(names, "/"))
				for k := i; k < j; k++ {
					w.p("\tm.%s = bits%d&(1<<%d) != 0", m.fields[k].goName, i, k-i)
				}
				i = j
				continue
			}
			fn := map[string]string{
				"octet": "octet", "short": "short", "long": "long", "longlong": "longlong",
				"timestamp": "longlong", "shortstr": "shortstr", "longstr": "longstr", "table": "table",
			}[f.amqp]
			w.p("\tm.%s = d.%s(%q)", f.goName, fn, f.xmlName)
			i++
		}
		w.p("\treturn d.finish(%d, %d)", m.classID, m.methodID)
		w.p("}")
	}
	w.p("")
}

// shareStrings reports whether the decoder of m should allocate one copy of
// the arguments for all its short strings: worthwhile when there are several
// short strings and safe memory-wise when there are no tables or long
// strings (so the arguments are at most a few hundred bytes).
func shareStrings(m genMethod) bool {
	n := 0
	for _, f := range m.fields {
		switch f.amqp {
		case "shortstr":
			n++
		case "table", "longstr":
			return false
		}
	}
	return n >= 2
}

func main() {
	specPath := flag.String("spec", "spec/amqp0-9-1.stripped.extended.xml", "main spec XML")
	addPath := flag.String("additions", "spec/rabbitmq-additions.xml", "supplement XML merged into the main spec")
	outPath := flag.String("o", "spec_gen.go", "output Go file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("gen: ")

	base, err := load(*specPath)
	if err != nil {
		log.Fatal(err)
	}
	add, err := load(*addPath)
	if err != nil {
		log.Fatal(err)
	}
	merge(base, add)
	src, err := generate(base, []string{*specPath, *addPath})
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*outPath, src, 0o644); err != nil {
		log.Fatal(err)
	}
}
