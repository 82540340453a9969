using System.Security.Cryptography;
using System.Text;
using Appliance.Wire.Codec;

namespace Appliance.Wire.Auth;

/// <summary>Authentication failed. The message says why in terms safe to show the peer and the log: it never
/// contains a secret, a proof or a key.</summary>
public sealed class AuthenticationException(string message) : Exception(message);

/// <summary>The outcome of a successful handshake, on both sides.</summary>
public sealed record AuthenticatedSession(string Entity, byte[] SessionKey, byte[] HandshakeSalt);

/// <summary>
/// Mutual challenge-response on a shared secret, modelled on cephx: the secret never crosses the wire, both sides
/// prove they hold it, and both derive the same fresh session key.
/// <code>
/// client → server  HELLO      entity, client nonce (32 random bytes)
/// server → client  CHALLENGE  server nonce (32 random bytes)
/// client → server  PROOF      HMAC-SHA256(secret, "client" | entity | cn | sn)
/// server → client  ACCEPT     HMAC-SHA256(secret, "server" | entity | cn | sn)
/// session key = HKDF-SHA256(secret, salt = cn | sn, info = "session" | entity)
/// </code>
/// Fresh nonces on both sides make every proof single-use: a recorded PROOF is useless against a new challenge.
/// </summary>
public static class Handshake
{
    public const int NonceSize = 32;
    private const byte HandshakeVersion = 1;

    public static byte[] EncodeHello(string entity, ReadOnlySpan<byte> clientNonce)
    {
        using var w = new WireWriter();
        var m = w.BeginStruct(HandshakeVersion, 1);
        w.WriteString(entity);
        w.WriteBytes(clientNonce);
        w.EndStruct(m);
        return w.ToArray();
    }

    public static (string Entity, byte[] ClientNonce) DecodeHello(ReadOnlySpan<byte> bytes)
    {
        var r = new WireReader(bytes);
        var s = r.BeginStruct(HandshakeVersion, "hello");
        var entity = r.ReadString(128);
        var nonce = r.ReadBytes(NonceSize).ToArray();
        r.EndStruct(s);
        r.ExpectEnd("hello");
        if (nonce.Length != NonceSize)
        {
            throw new WireFormatException($"hello nonce is {nonce.Length} bytes, not {NonceSize}");
        }
        return (entity, nonce);
    }

    public static byte[] Proof(Secret secret, string role, string entity, ReadOnlySpan<byte> clientNonce, ReadOnlySpan<byte> serverNonce)
    {
        var label = Encoding.UTF8.GetBytes(role + "|" + entity + "|");
        var data = new byte[label.Length + clientNonce.Length + serverNonce.Length];
        label.CopyTo(data, 0);
        clientNonce.CopyTo(data.AsSpan(label.Length));
        serverNonce.CopyTo(data.AsSpan(label.Length + clientNonce.Length));
        return HMACSHA256.HashData(secret.Bytes, data);
    }

    public static AuthenticatedSession Session(Secret secret, string entity, ReadOnlySpan<byte> clientNonce, ReadOnlySpan<byte> serverNonce)
    {
        var salt = new byte[clientNonce.Length + serverNonce.Length];
        clientNonce.CopyTo(salt);
        serverNonce.CopyTo(salt.AsSpan(clientNonce.Length));
        var key = HKDF.DeriveKey(HashAlgorithmName.SHA256, secret.Bytes.ToArray(), 32, salt, Encoding.UTF8.GetBytes("session|" + entity));
        return new AuthenticatedSession(entity, key, salt);
    }
}

/// <summary>The client side of <see cref="Handshake"/>: one instance per attempt.</summary>
public sealed class HandshakeClient(string entity, Secret secret)
{
    private readonly byte[] _clientNonce = RandomNumberGenerator.GetBytes(Handshake.NonceSize);
    private byte[]? _serverNonce;

    public byte[] Hello() => Handshake.EncodeHello(entity, _clientNonce);

    /// <summary>Answers the server's challenge with our proof.</summary>
    public byte[] Answer(ReadOnlySpan<byte> serverNonce)
    {
        if (serverNonce.Length != Handshake.NonceSize)
        {
            throw new AuthenticationException("server challenge has the wrong size");
        }
        _serverNonce = serverNonce.ToArray();
        return Handshake.Proof(secret, "client", entity, _clientNonce, _serverNonce);
    }

    /// <summary>Checks the server's proof: a server without our secret cannot produce it (mutual authentication).</summary>
    public AuthenticatedSession Complete(ReadOnlySpan<byte> serverProof)
    {
        if (_serverNonce is null)
        {
            throw new InvalidOperationException("Answer must come before Complete");
        }
        var expected = Handshake.Proof(secret, "server", entity, _clientNonce, _serverNonce);
        if (!CryptographicOperations.FixedTimeEquals(expected, serverProof))
        {
            throw new AuthenticationException("the server could not prove it knows our key; it is not the cluster we trust");
        }
        return Handshake.Session(secret, entity, _clientNonce, _serverNonce);
    }
}

/// <summary>The server side of <see cref="Handshake"/>: one instance per attempt, looking secrets up in a keyring.</summary>
public sealed class HandshakeServer(Func<string, Secret?> lookup)
{
    private readonly byte[] _serverNonce = RandomNumberGenerator.GetBytes(Handshake.NonceSize);
    private string? _entity;
    private byte[]? _clientNonce;
    private Secret? _secret;

    /// <summary>Takes HELLO and returns the challenge. An unknown entity is refused here.</summary>
    public byte[] Challenge(ReadOnlySpan<byte> hello)
    {
        (_entity, _clientNonce) = Handshake.DecodeHello(hello);
        _secret = lookup(_entity) ?? throw new AuthenticationException($"unknown entity {_entity}");
        return _serverNonce;
    }

    /// <summary>Verifies the client's proof; returns our proof and the session.</summary>
    public (byte[] ServerProof, AuthenticatedSession Session) Verify(ReadOnlySpan<byte> clientProof)
    {
        if (_secret is null || _entity is null || _clientNonce is null)
        {
            throw new InvalidOperationException("Challenge must come before Verify");
        }
        var expected = Handshake.Proof(_secret, "client", _entity, _clientNonce, _serverNonce);
        if (!CryptographicOperations.FixedTimeEquals(expected, clientProof))
        {
            throw new AuthenticationException($"authentication of {_entity} failed: wrong key");
        }
        return (Handshake.Proof(_secret, "server", _entity, _clientNonce, _serverNonce),
            Handshake.Session(_secret, _entity, _clientNonce, _serverNonce));
    }
}
