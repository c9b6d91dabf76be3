;;; cao-trust-test.el --- ERT tests of workspace trust in cao.el  -*- lexical-binding: t; -*-

;;; Commentary:

;; Run by tests/test_emacs_trust.py after cao-test.el (its helpers), with the selector
;; (tag cao-trust) or (tag cao-trust-core).  CAO_TEST_TRUST_BASE holds hostile/ (a .cao/ and its
;; own .venv/bin/cao-sidecar, which appends its arguments to hostile.marker, then runs the real
;; sidecar); CAO_TEST_TRUST_BIN holds the cao-sidecar "on PATH" (the real sidecar);
;; CAO_TEST_TRUST_CLI is "1" when that sidecar has the `trust' verb.  Each test works on a trust
;; store and an asked-file of its own (XDG_CONFIG_HOME and `cao-trust-asked-file' let-bound).

;;; Code:

(require 'ert)
(require 'cl-lib)
(require 'cao)
(require 'cao-test)

(defvar cao-trust-test--base (file-name-as-directory (getenv "CAO_TEST_TRUST_BASE")))
(defvar cao-trust-test--hostile (concat cao-trust-test--base "hostile/"))
(defvar cao-trust-test--marker (concat cao-trust-test--base "hostile.marker"))
(defvar cao-trust-test--bin (getenv "CAO_TEST_TRUST_BIN"))
(defvar cao-trust-test--path-program (expand-file-name "cao-sidecar" cao-trust-test--bin))
(defvar cao-trust-test--venv-program (concat cao-trust-test--hostile ".venv/bin/cao-sidecar"))

(defun cao-trust-test--write-store (config-home &rest folders)
  "Trust FOLDERS in the store under CONFIG-HOME, as the sidecar writes it."
  (let ((file (expand-file-name "cao-sidecar/trust.json" config-home)))
    (make-directory (file-name-directory file) t)
    (with-temp-file file
      (insert (json-encode
               `((version . 1)
                 (trusted . ,(mapcar (lambda (f) (cons (directory-file-name (file-truename f))
                                                       '((grantedAt . "2026-12-04T05:40:00Z"))))
                                     folders))))))))

(defun cao-trust-test--store-folders (config-home)
  "The folders trusted in the store under CONFIG-HOME."
  (let ((file (expand-file-name "cao-sidecar/trust.json" config-home)))
    (when (file-exists-p file)
      (let ((json-object-type 'alist) (json-key-type 'string))
        (mapcar #'car (cdr (assoc "trusted" (json-read-file file))))))))

(defmacro cao-trust-test--isolated (&rest body)
  "Run BODY with a store and an asked-file of its own, the PATH sidecar, no question.
`config-home' is bound to the store's XDG_CONFIG_HOME and `questions'
counts the questions asked (each answered no)."
  (declare (indent 0))
  `(let* ((config-home (make-temp-file "cao-trust-config" t))
          (process-environment (cons (concat "XDG_CONFIG_HOME=" config-home) process-environment))
          (cao-trust-asked-file (expand-file-name "asked.eld" (make-temp-file "cao-trust-asked" t)))
          (cao-sidecar-program nil)
          (cao-tmux-socket (getenv "CAO_TMUX_SOCKET"))
          (exec-path (cons cao-trust-test--bin exec-path))
          (questions 0))
     (ignore questions)
     (cl-letf (((symbol-function 'y-or-n-p) (lambda (&rest _) (cl-incf questions) nil)))
       ,@body)))

(defun cao-trust-test--skip (reason)
  "Skip the test for REASON, which tests/test_emacs_trust.py reports (ERT does not print it)."
  (message "SKIP-REASON: %s" reason)
  (ert-skip reason))

(defun cao-trust-test--start (root)
  "Start the sidecar for ROOT; return it."
  (let ((default-directory root))
    (cao-start root)))

(defun cao-trust-test--program (server)
  "The program SERVER runs."
  (car (process-command (jsonrpc--process server))))


;;; Client only

(ert-deftest cao-trust-test-store-rules ()
  "Trusted: a folder in the store, its subfolders, a symlink to them; a bad store trusts nothing."
  :tags '(cao-trust)
  (let* ((base (file-name-as-directory (make-temp-file "cao-trust-rules" t)))
         (child (concat base "parent/child/"))
         (link (concat base "link"))
         (other (concat base "other/")))
    (make-directory child t)
    (make-directory other t)
    (make-symbolic-link (directory-file-name child) link)
    (cao-trust-test--isolated
      (should-not (cao-trust-p child))            ; no store
      (cao-trust-test--write-store config-home (concat base "parent"))
      (should (equal (cao-trust-trusted-by child) (file-truename (concat base "parent"))))
      (should (cao-trust-p link))
      (should (cao-trust-p (concat base "parent")))
      (should-not (cao-trust-p other))
      (should-not (cao-trust-p base))
      (with-temp-file (cao-trust-store-file) (insert "{\"version\": 1, \"trusted\": {\"" base))
      (should-not (cao-trust-p child))            ; corrupt
      (with-temp-file (cao-trust-store-file)
        (insert (format "{\"version\": 2, \"trusted\": {%S: {}}}" (directory-file-name base))))
      (should-not (cao-trust-p child)))))         ; unknown version

(ert-deftest cao-trust-test-program-choice ()
  "The project's own .venv/bin/cao-sidecar only once trusted; else the one on PATH."
  :tags '(cao-trust)
  (cao-trust-test--isolated
    (should (equal (cao-sidecar-command cao-trust-test--hostile) (list cao-trust-test--path-program)))
    (let ((exec-path nil))
      (let ((err (should-error (cao-sidecar-command cao-trust-test--hostile) :type 'user-error)))
        (should (string-match-p "is not trusted" (error-message-string err)))))
    (cao-trust-test--write-store config-home cao-trust-test--hostile)
    (should (equal (cao-sidecar-command cao-trust-test--hostile) (list cao-trust-test--venv-program)))
    ;; The user's own setting always wins.
    (let ((cao-sidecar-program "/opt/cao/bin/cao-sidecar"))
      (should (equal (cao-sidecar-command cao-trust-test--hostile) '("/opt/cao/bin/cao-sidecar"))))))

(ert-deftest cao-trust-test-question-once ()
  "One question per folder with a .cao/ that is not trusted, remembered."
  :tags '(cao-trust)
  (cao-trust-test--isolated
    (should (eq (cao-trust-maybe-ask cao-trust-test--hostile) 'not-now))
    (should (cao-test--message-matching "stays untrusted; M-x cao-trust"))
    (should-not (cao-trust-maybe-ask cao-trust-test--hostile))
    (should (= questions 1))
    (should (file-exists-p cao-trust-asked-file))
    (should (cao-trust-asked-p cao-trust-test--hostile))
    ;; By default, in the user's Emacs directory.
    (should (equal (eval (car (get 'cao-trust-asked-file 'standard-value)) t)
                   (locate-user-emacs-file "cao-trust-asked.eld")))
    ;; No .cao/: nothing to ask.
    (should-not (cao-trust-maybe-ask cao-trust-test--base))
    ;; Trusted: nothing to ask.
    (let ((cao-trust-asked-file (make-temp-file "cao-trust-asked-2")))
      (delete-file cao-trust-asked-file)
      (cao-trust-test--write-store config-home cao-trust-test--hostile)
      (should-not (cao-trust-maybe-ask cao-trust-test--hostile)))
    (should (= questions 1))))

(ert-deftest cao-trust-test-untrusted-start ()
  "An untrusted folder: asked once, the PATH sidecar runs, the folder's own never; trustChanged shown."
  :tags '(cao-trust)
  (cao-trust-test--isolated
    (let ((server (cao-trust-test--start cao-trust-test--hostile)))
      (unwind-protect
          (progn
            (should (cao--live-p server))
            (should (= questions 1))
            (should (equal (cao-trust-test--program server) cao-trust-test--path-program))
            (should-not (file-exists-p cao-trust-test--marker))
            (when (cao--has-method-p server "cao/getTrust") ; its answer first, then ours
              (cao-test--wait "cao/getTrust" (lambda () (cao--server-trust server))))
            ;; cao/trustChanged: the state kept, the mode line, a message when trust changes.
            (let ((untrusted (list :path (directory-file-name cao-trust-test--hostile) :trusted :json-false
                                   :source "none" :hasConfig t
                                   :heldBack ["profile helper: env, permissionMode not applied"])))
              (eglot-handle-notification server 'cao/trustChanged :folders (vector untrusted))
              (should (string-suffix-p " untrusted" (cao-mode-line-text)))
              (eglot-handle-notification server 'cao/trustChanged
                                         :folders (vector (append '(:trusted t :source "store") untrusted)))
              (should (cao-test--message-matching "hostile is now trusted: its .cao/ is in force"))
              (should-not (string-match-p "untrusted" (cao-mode-line-text)))
              (eglot-handle-notification server 'cao/trustChanged :folders (vector untrusted))
              (should (cao-test--message-matching
                       "hostile is no longer trusted.*held back: profile helper: env"))))
        (cao-stop server)))
    ;; Started again: not asked again.
    (let ((server (cao-trust-test--start cao-trust-test--hostile)))
      (cao-stop server))
    (should (= questions 1))
    (should-not (file-exists-p cao-trust-test--marker))))

(ert-deftest cao-trust-test-no-cli ()
  "No sidecar running and none on PATH: `cao-trust' says so, runs nothing."
  :tags '(cao-trust)
  (cao-trust-test--isolated
    (let ((exec-path nil))
      (let ((err (should-error (cao-trust cao-trust-test--hostile) :type 'user-error)))
        (should (string-match-p "not on `exec-path'" (error-message-string err)))))
    (should-not (cao-trust-test--store-folders config-home))))


;;; With the sidecar's side of trust (cao/setTrust, `cao-sidecar trust')

(ert-deftest cao-trust-test-through-the-sidecar ()
  "`cao-trust' and `cao-untrust' with a running sidecar: cao/setTrust, persisted."
  :tags '(cao-trust-core)
  (cao-trust-test--isolated
    (let ((server (cao-trust-test--start cao-trust-test--hostile))
          (real (directory-file-name (file-truename cao-trust-test--hostile))))
      (unwind-protect
          (progn
            (unless (cao--has-method-p server "cao/setTrust")
              (cao-trust-test--skip "the sidecar does not announce cao/setTrust"))
            (should (eq (cao-trust cao-trust-test--hostile) 'sidecar))
            (should (member real (cao-trust-test--store-folders config-home)))
            (should (cao-trust-p cao-trust-test--hostile))
            (should (cl-some (lambda (f) (eq (plist-get f :trusted) t)) (cao--server-trust server)))
            (should (eq (cao-untrust cao-trust-test--hostile) 'sidecar))
            (should-not (member real (cao-trust-test--store-folders config-home)))
            (should-not (cao-trust-p cao-trust-test--hostile)))
        (cao-stop server)))))

(ert-deftest cao-trust-test-through-the-command-line ()
  "Without a sidecar, `cao-trust' runs `cao-sidecar trust'; then the folder's own sidecar runs."
  :tags '(cao-trust-core)
  (unless (equal (getenv "CAO_TEST_TRUST_CLI") "1")
    (cao-trust-test--skip "the sidecar has no `cao-sidecar trust' verb"))
  (cao-trust-test--isolated
    (let ((real (directory-file-name (file-truename cao-trust-test--hostile))))
      (should (eq (cao-trust cao-trust-test--hostile) 'cli))
      (should (member real (cao-trust-test--store-folders config-home)))
      (let ((server (cao-trust-test--start cao-trust-test--hostile)))
        (unwind-protect
            (progn
              (should (= questions 0))
              (should (equal (cao-trust-test--program server) cao-trust-test--venv-program))
              (should (file-exists-p cao-trust-test--marker)))
          (cao-stop server)))
      (should (eq (cao-untrust cao-trust-test--hostile) 'cli))
      (should-not (member real (cao-trust-test--store-folders config-home)))
      (should (equal (cao-sidecar-command cao-trust-test--hostile) (list cao-trust-test--path-program))))))

(ert-deftest cao-trust-test-question-answered-trust ()
  "Yes to the question: trusted at once (`cao-sidecar trust'), and the folder's own sidecar runs."
  :tags '(cao-trust-core)
  (unless (equal (getenv "CAO_TEST_TRUST_CLI") "1")
    (cao-trust-test--skip "the sidecar has no `cao-sidecar trust' verb"))
  (cao-trust-test--isolated
    (when (file-exists-p cao-trust-test--marker) (delete-file cao-trust-test--marker))
    (cl-letf (((symbol-function 'y-or-n-p) (lambda (&rest _) (cl-incf questions) t)))
      (let ((server (cao-trust-test--start cao-trust-test--hostile)))
        (unwind-protect
            (progn
              (should (= questions 1))
              (should (cao-trust-p cao-trust-test--hostile))
              (should (equal (cao-trust-test--program server) cao-trust-test--venv-program))
              (should (file-exists-p cao-trust-test--marker)))
          (cao-stop server))))))

(provide 'cao-trust-test)
;;; cao-trust-test.el ends here
