using Appliance.Wire.Auth;
using Appliance.Wire.Codec;

namespace Appliance.Maps.Protocol;

/// <summary>
/// The bytes of the monitors' two ticket answers (<see cref="MonQuery.ServiceTicket"/>,
/// <see cref="MonQuery.ServiceKeys"/>): the monitor seals them (node/Monitor decides who gets what), the client opens
/// them with its own key. A ticket grant carries the ticket, its session key sealed under the client's key (Wire's
/// <see cref="SecretBox"/>, so a crc connection never carries it in the clear) and its expiry; a keys grant carries
/// the service's keys sealed under the daemon's key.
/// </summary>
public static class TicketGrants
{
    private const byte Version = 1;
    private const string SessionKeyPurpose = "ticket session key";
    private const string KeysPurpose = "service keys";

    /// <summary>The monitor's side: <paramref name="issued"/> for the entity whose key is <paramref name="clientKey"/>.</summary>
    public static byte[] SealGrant(IssuedTicket issued, Secret clientKey)
    {
        ArgumentNullException.ThrowIfNull(issued);
        using var w = new WireWriter();
        var m = w.BeginStruct(Version, 1);
        w.WriteBytes(issued.Ticket);
        w.WriteBytes(SecretBox.Seal(clientKey, SessionKeyPurpose, issued.SessionKey));
        w.WriteI64(issued.Expires.ToUnixTimeMilliseconds());
        w.EndStruct(m);
        return w.ToArray();
    }

    /// <summary>The client's side: the ticket, with its session key opened with the client's key.</summary>
    public static IssuedTicket OpenGrant(ReadOnlySpan<byte> data, Secret key)
    {
        var r = new WireReader(data);
        var s = r.BeginStruct(Version, "ticket grant");
        var ticket = r.ReadBytes(16 << 10).ToArray();
        var sessionKey = SecretBox.Open(key, SessionKeyPurpose, r.ReadBytes(256));
        var expires = DateTimeOffset.FromUnixTimeMilliseconds(r.ReadI64());
        r.EndStruct(s);
        r.ExpectEnd("ticket grant");
        return new IssuedTicket(ticket, sessionKey, expires);
    }

    /// <summary>The monitor's side: <paramref name="keys"/> of <paramref name="service"/> for the daemon whose key is
    /// <paramref name="daemonKey"/>.</summary>
    public static byte[] SealKeys(string service, IReadOnlyCollection<ServiceKey> keys, Secret daemonKey)
    {
        ArgumentNullException.ThrowIfNull(keys);
        using var plain = new WireWriter();
        plain.WriteU32((uint)keys.Count);
        foreach (var k in keys)
        {
            k.Encode(plain);
        }
        using var w = new WireWriter();
        var m = w.BeginStruct(Version, 1);
        w.WriteString(service);
        w.WriteBytes(SecretBox.Seal(daemonKey, KeysPurpose + "|" + service, plain.WrittenSpan));
        w.EndStruct(m);
        return w.ToArray();
    }

    /// <summary>The daemon's side: the service's keys, opened with the daemon's key, ready for a
    /// <see cref="TicketVerifier"/>.</summary>
    public static ServiceSecrets OpenKeys(ReadOnlySpan<byte> data, Secret key)
    {
        var r = new WireReader(data);
        var s = r.BeginStruct(Version, "service keys grant");
        var service = r.ReadString(64);
        var plain = SecretBox.Open(key, KeysPurpose + "|" + service, r.ReadBytes(64 << 10));
        r.EndStruct(s);
        r.ExpectEnd("service keys grant");
        var p = new WireReader(plain);
        var n = MapCodec.ReadCount(ref p, 8, "service keys");
        var secrets = new ServiceSecrets(service);
        for (var i = 0; i < n; i++)
        {
            var k = ServiceKey.Decode(ref p);
            secrets.Add(new ServiceSecret(k.Id, k.Key, DateTimeOffset.FromUnixTimeMilliseconds(k.ExpiresMs)));
        }
        p.ExpectEnd("service keys");
        return secrets;
    }
}
