using Appliance.Wire.Auth;

namespace Appliance.Wire.Tests.Auth;

public sealed class KeyringTests
{
    [Fact]
    public void A_saved_keyring_is_owner_only_and_round_trips()
    {
        var dir = Directory.CreateTempSubdirectory("appliance-keyring-");
        try
        {
            var ring = new Keyring();
            var key = Secret.Generate();
            ring.Add(new KeyringEntry("client.admin", key, new Dictionary<string, string> { ["mon"] = "allow *", ["osd"] = "allow rw pool=vm" }));
            var path = Path.Combine(dir.FullName, "keyring");
            ring.Save(path);

            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            var back = Keyring.Load(path);
            var entry = back.Find("client.admin")!;
            Assert.Equal(key, entry.Key);
            Assert.True(Authorizer.IsAllowed(entry.ParsedCaps(), "osd", Access.Write, "vm"));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void Secrets_never_print_themselves()
    {
        var key = Secret.Generate();
        Assert.Equal("<secret>", key.ToString());
        Assert.DoesNotContain(key.ToBase64(), $"{key}");
        var entry = new KeyringEntry("osd.1", key, new Dictionary<string, string>());
        Assert.DoesNotContain(key.ToBase64(), entry.ToString());
    }

    [Fact]
    public void Errors_name_the_line_but_never_the_key()
    {
        var text = "[client.admin]\n\tkey = notbase64-but-secretish\n";
        var e = Assert.Throws<FormatException>(() => Keyring.Parse(text, "k"));
        Assert.Contains("k:2", e.Message);
        Assert.DoesNotContain("secretish", e.Message);
        Assert.Throws<FormatException>(() => Keyring.Parse("[nobody]\nkey = x\n"));
        Assert.Throws<FormatException>(() => Keyring.Parse("[client.a]\n"));
    }
}
