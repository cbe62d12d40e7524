package kclient

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFetchTopics: an existing topic is answered with its partitions and
// id, a missing one with UNKNOWN_TOPIC_OR_PARTITION, and asking does not
// create it even where the broker would create topics on first use.
func TestFetchTopics(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "there"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	require.NoError(t, err)
	defer cl.Close()

	for range 2 { // the second time proves the first created nothing
		md, err := FetchTopics(t.Context(), cl, "there", "absent")
		require.NoError(t, err)
		require.NoError(t, md["there"].Err)
		require.Equal(t, 3, md["there"].Partitions)
		require.NotEqual(t, [16]byte{}, md["there"].ID)
		require.ErrorIs(t, md["absent"].Err, kerr.UnknownTopicOrPartition)
		require.Zero(t, md["absent"].Partitions)
	}
}

// TestValidateOrEmbedded: without brokers every TLS or SASL setting is
// refused by name; with brokers it is Validate.
func TestValidateOrEmbedded(t *testing.T) {
	require.NoError(t, (&Conn{}).ValidateOrEmbedded())
	for flag, c := range map[string]Conn{
		"tls": {TLS: true}, "tls-ca": {TLSCA: "ca.pem"}, "tls-cert": {TLSCert: "c.pem"}, "tls-key": {TLSKey: "k.pem"},
		"tls-server-name": {TLSServerName: "kafka"}, "sasl-mechanism": {SASLMechanism: SASLPlain},
		"sasl-user": {SASLUser: "u"}, "sasl-password": {SASLPassword: "p"}, "sasl-password-file": {SASLPasswordFile: "pw"},
	} {
		err := c.ValidateOrEmbedded()
		require.ErrorIs(t, err, ErrInvalid, flag)
		require.ErrorContains(t, err, "--"+flag+" needs --brokers", flag)
	}
	err := (&Conn{Brokers: []string{"localhost"}}).ValidateOrEmbedded()
	require.ErrorContains(t, err, "--brokers", "with brokers, Validate")
}
