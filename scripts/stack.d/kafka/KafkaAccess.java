/*
 * KafkaAccess.java — gives the secure local broker the users and ACLs of
 * k8s/kafka-acls.yaml, as Strimzi's User Operator gives them to the cluster.
 * Run by scripts/stack (profile secure) after the broker is ready, with Java's
 * single-file launcher on the broker's own classpath (kafka-clients' Admin API;
 * the broker jars do not include kafka-tools' AclCommand):
 *
 *   scripts/kafka-acls bindings |
 *     java -cp "$kafka_lib/*" KafkaAccess.java ADMIN.properties PASSWORD-DIR
 *
 * stdin: one binding a line, tab-separated: user, resource type, pattern type,
 * name, operation (Kafka's enum names; scripts/kafka-acls writes them).
 * ADMIN.properties: a Java client configuration of a super user.
 * PASSWORD-DIR: <user>.password for every user named on stdin.
 *
 * For every user named: its SCRAM-SHA-512 credential is set (upserted) from its
 * password file, and its ACLs are made exactly the lines given (principal
 * User:<user>, host *, allow): missing ones are created, others of that
 * principal deleted.  Principals not named are left alone.  Prints one summary
 * line; exits 1 (with the broker's error) on any failure.
 */
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.FileInputStream;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclBindingFilter;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class KafkaAccess {
    static final int ITERATIONS = 8192; /* Kafka's default for SCRAM-SHA-512 (kafka-configs.sh) */

    public static void main(String[] args) throws Exception {
        if (args.length != 2) {
            System.err.println("usage: KafkaAccess ADMIN.properties PASSWORD-DIR < bindings");
            System.exit(2);
        }
        Properties props = new Properties();
        try (FileInputStream in = new FileInputStream(args[0])) {
            props.load(in);
        }
        Path pwdir = Path.of(args[1]);

        Map<String, Set<AclBinding>> want = new LinkedHashMap<>();
        BufferedReader r = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        int lineno = 0;
        for (String line; (line = r.readLine()) != null;) {
            lineno++;
            if (line.isBlank())
                continue;
            String[] f = line.split("\t");
            if (f.length != 5)
                throw new IllegalArgumentException("stdin line " + lineno + ": expected 5 tab-separated fields");
            ResourcePattern res = new ResourcePattern(ResourceType.valueOf(f[1]), f[3], PatternType.valueOf(f[2]));
            AccessControlEntry ace = new AccessControlEntry("User:" + f[0], "*", AclOperation.valueOf(f[4]),
                                                            AclPermissionType.ALLOW);
            want.computeIfAbsent(f[0], k -> new LinkedHashSet<>()).add(new AclBinding(res, ace));
        }

        try (Admin admin = Admin.create(props)) {
            List<UserScramCredentialAlteration> creds = new ArrayList<>();
            for (String user : want.keySet()) {
                String pw = Files.readString(pwdir.resolve(user + ".password"), StandardCharsets.UTF_8).strip();
                creds.add(new UserScramCredentialUpsertion(
                    user, new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS), pw));
            }
            admin.alterUserScramCredentials(creds).all().get(60, TimeUnit.SECONDS);

            Set<AclBinding> have = new LinkedHashSet<>(admin.describeAcls(AclBindingFilter.ANY).values()
                                                            .get(60, TimeUnit.SECONDS));
            Set<String> principals = new LinkedHashSet<>();
            Set<AclBinding> all = new LinkedHashSet<>();
            for (Map.Entry<String, Set<AclBinding>> e : want.entrySet()) {
                principals.add("User:" + e.getKey());
                all.addAll(e.getValue());
            }
            List<AclBindingFilter> drop = new ArrayList<>();
            for (AclBinding b : have)
                if (principals.contains(b.entry().principal()) && !all.contains(b))
                    drop.add(b.toFilter());
            List<AclBinding> add = new ArrayList<>();
            for (AclBinding b : all)
                if (!have.contains(b))
                    add.add(b);
            if (!drop.isEmpty())
                admin.deleteAcls(drop).all().get(60, TimeUnit.SECONDS);
            if (!add.isEmpty())
                admin.createAcls(add).all().get(60, TimeUnit.SECONDS);
            System.out.printf("%d users (SCRAM-SHA-512 set), %d ACLs: %d added, %d removed%n", want.size(),
                              all.size(), add.size(), drop.size());
        } catch (java.util.concurrent.ExecutionException e) {
            System.err.println("KafkaAccess: " + e.getCause());
            System.exit(1);
        }
    }
}
