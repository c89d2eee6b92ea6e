package testenv

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

func TestMongoPingAndRoundTrip(t *testing.T) {
	t.Logf("store: %s", StoreKind())
	uri := Mongo(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	client, err := mongo.Connect(options.Client().ApplyURI(uri).SetServerSelectionTimeout(10 * time.Second))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })

	if err := client.Ping(ctx, nil); err != nil {
		t.Fatalf("ping %s: %v", StoreKind(), err)
	}

	db := client.Database(Database(t))
	t.Cleanup(func() { _ = db.Drop(context.Background()) })
	coll := db.Collection("things")
	if _, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var got struct {
		ID string `bson:"_id"`
		N  int    `bson:"n"`
	}
	if err := coll.FindOne(ctx, bson.D{{Key: "_id", Value: "a"}}).Decode(&got); err != nil {
		t.Fatalf("find: %v", err)
	}
	if got.ID != "a" || got.N != 1 {
		t.Fatalf("got %+v, want {a 1}", got)
	}
}

func TestKafkaProduceConsume(t *testing.T) {
	t.Logf("kafka: %s", KafkaKind())
	brokers := Kafka(t)
	topic := Topic(t, "testenv")
	CreateTopic(t, brokers, topic, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	const n = 20
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{
			Key:     fmt.Appendf(nil, "k%d", i%5),
			Value:   fmt.Appendf(nil, "v%d", i),
			Headers: []kgo.RecordHeader{{Key: "h", Value: []byte{0, byte(i)}}},
		})
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	cons, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumerGroup(topic+"-g"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()

	seen := map[string]bool{}
	for len(seen) < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before timeout", len(seen), n)
		}
		if err := fs.Err(); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if len(r.Headers) != 1 || r.Headers[0].Key != "h" || len(r.Headers[0].Value) != 2 {
				t.Errorf("record %s: headers %v", r.Value, r.Headers)
			}
			seen[string(r.Value)] = true
		})
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func TestRequireRealKafka(t *testing.T) {
	t.Setenv(EnvKafkaBrokers, "")
	if RealKafka() {
		t.Fatal("RealKafka with empty env")
	}
	t.Run("skips", func(t *testing.T) {
		RequireRealKafka(t)
		t.Fatal("not skipped")
	})
	t.Setenv(EnvKafkaBrokers, " 127.0.0.1:1 , 127.0.0.1:2,")
	if !RealKafka() {
		t.Fatal("RealKafka false with env set")
	}
	if got := Kafka(t); strings.Join(got, "|") != "127.0.0.1:1|127.0.0.1:2" {
		t.Fatalf("Kafka = %q", got)
	}
}

var dbName = regexp.MustCompile(`^t_[a-z0-9_]+_[0-9a-f]{8}$`)

func TestDatabase(t *testing.T) {
	for _, name := range []string{"Simple", "With Spaces/And-Dashes.x", strings.Repeat("VeryLong", 20), "ÜnïcødeΩ"} {
		t.Run(name, func(t *testing.T) {
			a, b := Database(t), Database(t)
			if a == b {
				t.Fatalf("not unique: %s", a)
			}
			if len(a) > 63 || !dbName.MatchString(a) || strings.Contains(a, "__") {
				t.Fatalf("bad name %q (%d chars)", a, len(a))
			}
		})
	}
}

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]+$`)

func TestTopic(t *testing.T) {
	for _, prefix := range []string{"", "orders", "a b/c", strings.Repeat("p", 300)} {
		a, b := Topic(t, prefix), Topic(t, prefix)
		if a == b {
			t.Fatalf("not unique: %s", a)
		}
		if len(a) > 249 || !topicName.MatchString(a) || a == "." || a == ".." {
			t.Fatalf("bad topic %q (%d chars)", a, len(a))
		}
	}
}

func TestStoreKind(t *testing.T) {
	t.Setenv(EnvMongoURI, "")
	if got := StoreKind(); got != "ferretdb-sqlite (embedded)" {
		t.Fatalf("StoreKind = %q", got)
	}
	for uri, want := range map[string]string{
		"mongodb://user:s3cret@db1:27017,db2:27017/app?replicaSet=rs0": "external: db1:27017,db2:27017",
		"mongodb+srv://u:p@cluster0.example.net/?retryWrites=true":     "external: cluster0.example.net",
		"mongodb://127.0.0.1:27018/":                                   "external: 127.0.0.1:27018",
	} {
		t.Setenv(EnvMongoURI, uri)
		got := StoreKind()
		if got != want {
			t.Errorf("StoreKind(%q) = %q, want %q", uri, got, want)
		}
		if strings.Contains(got, "s3cret") || strings.Contains(got, "u:p") {
			t.Errorf("credentials leak: %q", got)
		}
	}
}
