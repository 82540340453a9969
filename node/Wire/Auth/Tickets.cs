using System.Buffers.Binary;
using System.Security.Cryptography;
using Appliance.Wire.Codec;

namespace Appliance.Wire.Auth;

/// <summary>One generation of a service's rotating secret.</summary>
public sealed record ServiceSecret(uint Id, Secret Key, DateTimeOffset Expires);

/// <summary>
/// The rotating secrets of one service type (e.g. `osd`), shared by the monitors and every daemon of that type.
/// New tickets are sealed with the newest secret; tickets sealed with any secret still listed are accepted, so a
/// rotation never breaks the tickets already handed out. Safe to use from several threads (a daemon adds the keys it
/// fetches while its connections verify tickets).
/// </summary>
public sealed class ServiceSecrets(string service)
{
    private readonly List<ServiceSecret> _secrets = [];
    private readonly Lock _lock = new();

    public string Service { get; } = service;

    public ServiceSecret Current
    {
        get
        {
            lock (_lock)
            {
                return _secrets.Count > 0 ? _secrets[^1] : throw new InvalidOperationException($"service {Service} has no secret yet");
            }
        }
    }

    /// <summary>Adds a fresh secret and forgets the expired ones.</summary>
    public ServiceSecret Rotate(DateTimeOffset now, TimeSpan lifetime)
    {
        lock (_lock)
        {
            _secrets.RemoveAll(s => s.Expires <= now);
            var id = _secrets.Count > 0 ? _secrets[^1].Id + 1 : 1;
            var secret = new ServiceSecret(id, Secret.Generate(), now + lifetime);
            _secrets.Add(secret);
            return secret;
        }
    }

    /// <summary>Adds a secret (one fetched from the monitors); one already held by its id is kept as it is.</summary>
    public void Add(ServiceSecret secret)
    {
        lock (_lock)
        {
            if (!_secrets.Exists(s => s.Id == secret.Id))
            {
                _secrets.Add(secret);
                _secrets.Sort((a, b) => a.Id.CompareTo(b.Id));
            }
        }
    }

    /// <summary>Called (on the verifying thread; keep it short) when a ticket names a key id this set does not
    /// hold: a daemon fetches the keys again, since the monitors may have rotated in a newer one.</summary>
    public Action<uint>? Missing { get; set; }

    internal void OnMissing(uint id) => Missing?.Invoke(id);

    /// <summary>Every key held, in id order (a daemon adds them to the verifier's set when it fetches again).</summary>
    public IReadOnlyList<ServiceSecret> All
    {
        get
        {
            lock (_lock)
            {
                return [.. _secrets];
            }
        }
    }

    public ServiceSecret? Find(uint id)
    {
        lock (_lock)
        {
            return _secrets.Find(s => s.Id == id);
        }
    }
}

/// <summary>What a monitor hands an authenticated client for one service: the sealed ticket (opaque to the client)
/// and the session key the client proves itself with.</summary>
public sealed record IssuedTicket(byte[] Ticket, byte[] SessionKey, DateTimeOffset Expires);

/// <summary>What a service learns from a valid ticket.</summary>
public sealed record TicketIdentity(string Entity, EntityCaps Caps, byte[] SessionKey, DateTimeOffset Expires);

/// <summary>
/// Service tickets, as in cephx: the monitor seals {entity, service, caps, session key, expiry, ticket id} under the
/// service's current secret with AES-GCM; the client presents the ticket with an authenticator (a fresh nonce and
/// time, MACed with the session key); the service opens the ticket, checks service, expiry and MAC, and refuses an
/// authenticator it has already seen.
/// </summary>
public static class Tickets
{
    private const byte TicketVersion = 1;

    public static IssuedTicket Issue(ServiceSecrets secrets, string entity, EntityCaps caps, DateTimeOffset now, TimeSpan ttl)
    {
        var secret = secrets.Current;
        var sessionKey = RandomNumberGenerator.GetBytes(32);
        var expires = now + ttl;
        using var w = new WireWriter();
        var m = w.BeginStruct(TicketVersion, 1);
        w.WriteString(entity);
        w.WriteString(secrets.Service);
        var capMap = caps.ToDictionary();
        w.WriteU32((uint)capMap.Count);
        foreach (var (service, cap) in capMap)
        {
            w.WriteString(service);
            w.WriteString(cap);
        }
        w.WriteBytes(sessionKey);
        w.WriteI64(expires.ToUnixTimeMilliseconds());
        w.WriteFixed(RandomNumberGenerator.GetBytes(16)); // ticket id
        w.EndStruct(m);
        return new IssuedTicket(Seal(secret, w.WrittenSpan), sessionKey, expires);
    }

    /// <summary>The client's proof of holding the session key, fresh for each connection.</summary>
    public static byte[] Authenticator(byte[] sessionKey, DateTimeOffset now)
    {
        var a = new byte[16 + 8 + 32];
        RandomNumberGenerator.Fill(a.AsSpan(0, 16));
        BinaryPrimitives.WriteInt64LittleEndian(a.AsSpan(16), now.ToUnixTimeMilliseconds());
        HMACSHA256.HashData(sessionKey, a.AsSpan(0, 24), a.AsSpan(24));
        return a;
    }

    private static byte[] Seal(ServiceSecret secret, ReadOnlySpan<byte> plain)
    {
        var sealedBytes = new byte[4 + 12 + plain.Length + 16];
        BinaryPrimitives.WriteUInt32LittleEndian(sealedBytes, secret.Id);
        RandomNumberGenerator.Fill(sealedBytes.AsSpan(4, 12));
        using var aes = new AesGcm(secret.Key.Bytes, 16);
        aes.Encrypt(sealedBytes.AsSpan(4, 12), plain, sealedBytes.AsSpan(16, plain.Length), sealedBytes.AsSpan(16 + plain.Length), sealedBytes.AsSpan(0, 4));
        return sealedBytes;
    }

    internal static (TicketIdentity Identity, string Service) Open(ServiceSecrets secrets, ReadOnlySpan<byte> ticket)
    {
        if (ticket.Length < 4 + 12 + 16)
        {
            throw new AuthenticationException("ticket is truncated");
        }
        var id = BinaryPrimitives.ReadUInt32LittleEndian(ticket);
        var secret = secrets.Find(id);
        if (secret is null)
        {
            secrets.OnMissing(id);
            throw new AuthenticationException($"ticket was sealed with a {secrets.Service} secret this node does not hold (rotated out, or meant for another service)");
        }
        var plain = new byte[ticket.Length - 32];
        try
        {
            using var aes = new AesGcm(secret.Key.Bytes, 16);
            aes.Decrypt(ticket.Slice(4, 12), ticket.Slice(16, plain.Length), ticket[(16 + plain.Length)..], plain, ticket[..4]);
        }
        catch (AuthenticationTagMismatchException)
        {
            throw new AuthenticationException($"ticket does not open with {secrets.Service} secret {id}: forged, damaged, or for another service");
        }
        try
        {
            var r = new WireReader(plain);
            var s = r.BeginStruct(TicketVersion, "ticket");
            var entity = r.ReadString(128);
            var service = r.ReadString(64);
            var count = r.ReadU32();
            if (count > 16)
            {
                throw new WireFormatException("too many capability entries");
            }
            var caps = new Dictionary<string, string>(StringComparer.Ordinal);
            for (var i = 0; i < count; i++)
            {
                caps[r.ReadString(64)] = r.ReadString(4096);
            }
            var key = r.ReadBytes(32).ToArray();
            var expires = DateTimeOffset.FromUnixTimeMilliseconds(r.ReadI64());
            r.EndStruct(s);
            return (new TicketIdentity(entity, new EntityCaps(caps), key, expires), service);
        }
        catch (Exception e) when (e is WireFormatException or CapabilityFormatException)
        {
            // Authenticated by our own secret yet undecodable: a bug or a newer monitor; refuse, never guess.
            throw new AuthenticationException($"ticket content is unreadable: {e.Message}");
        }
    }
}

/// <summary>
/// The service side: verifies tickets and authenticators and remembers the authenticators it accepted until their
/// ticket expires, so a recorded connection attempt cannot be replayed.
/// </summary>
public sealed class TicketVerifier(ServiceSecrets secrets, TimeSpan maxClockSkew)
{
    private readonly Dictionary<string, DateTimeOffset> _seen = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public TicketIdentity Verify(ReadOnlySpan<byte> ticket, ReadOnlySpan<byte> authenticator, DateTimeOffset now)
    {
        var (identity, service) = Tickets.Open(secrets, ticket);
        if (service != secrets.Service)
        {
            throw new AuthenticationException($"ticket of {identity.Entity} is for service {service}, not {secrets.Service}");
        }
        if (identity.Expires <= now)
        {
            throw new AuthenticationException($"ticket of {identity.Entity} expired at {identity.Expires:u}; ask the monitors for a new one");
        }
        if (authenticator.Length != 56)
        {
            throw new AuthenticationException("authenticator has the wrong size");
        }
        Span<byte> mac = stackalloc byte[32];
        HMACSHA256.HashData(identity.SessionKey, authenticator[..24], mac);
        if (!CryptographicOperations.FixedTimeEquals(mac, authenticator[24..]))
        {
            throw new AuthenticationException($"authenticator of {identity.Entity} is not made with the ticket's session key");
        }
        var stamp = DateTimeOffset.FromUnixTimeMilliseconds(BinaryPrimitives.ReadInt64LittleEndian(authenticator[16..]));
        if ((now - stamp).Duration() > maxClockSkew)
        {
            throw new AuthenticationException($"authenticator of {identity.Entity} is stale or from the future by {(now - stamp).Duration()}");
        }
        var nonce = Convert.ToHexString(authenticator[..16]);
        lock (_lock)
        {
            foreach (var expired in _seen.Where(kv => kv.Value <= now).Select(kv => kv.Key).ToList())
            {
                _seen.Remove(expired);
            }
            if (!_seen.TryAdd(nonce, identity.Expires))
            {
                throw new AuthenticationException($"authenticator of {identity.Entity} was already used (replay)");
            }
        }
        return identity;
    }
}
