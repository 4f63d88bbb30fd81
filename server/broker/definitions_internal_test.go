package broker

import defstore "github.com/amqp-go/amqp-go/server/definitions"

// openBadger is Config.OpenDefinitions for the tests in this package:
// the Badger store, which the broker does not import.
func openBadger(dir string) (DefinitionsStore, error) { return defstore.Open(dir) }
