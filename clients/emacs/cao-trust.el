;;; cao-trust.el --- Workspace trust for cao.el  -*- lexical-binding: t; -*-

;; Copyright (C) 2025 cao-sidecar contributors

;; Author: cao-sidecar contributors
;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1"))
;; Keywords: tools, processes

;; This file is not part of GNU Emacs.

;;; Commentary:

;; A folder's .cao/ (agent profiles, flows, providers) and its own .venv/bin/cao-sidecar are
;; the folder's code.  Until the user trusts the folder, nothing of it runs: the sidecar holds
;; them back, and cao.el runs cao-sidecar from `exec-path', never the folder's own.
;;
;; Trust is the user's, kept in the sidecar's store $XDG_CONFIG_HOME/cao-sidecar/trust.json by
;; real path; a trusted folder's subfolders are trusted too.  This file reads that store, asks
;; once per folder (remembered in `cao-trust-asked-file'), and runs `cao-sidecar trust' when no
;; sidecar is there to ask.  The commands `cao-trust' and `cao-untrust' are in cao.el.

;;; Code:

(require 'cl-lib)
(require 'json)
(require 'subr-x)

(defcustom cao-trust-ask t
  "Non-nil: ask once whether to trust a folder with a .cao/ that is not trusted.
Asked the first time such a folder's sidecar starts; the answer is
remembered in `cao-trust-asked-file'."
  :type 'boolean
  :group 'cao)

(defcustom cao-trust-asked-file (locate-user-emacs-file "cao-trust-asked.eld")
  "File remembering the folders cao.el already asked about trusting."
  :type 'file
  :group 'cao)

(defun cao-trust-store-file ()
  "The user's trust store: $XDG_CONFIG_HOME/cao-sidecar/trust.json."
  (let ((base (getenv "XDG_CONFIG_HOME")))
    (expand-file-name "cao-sidecar/trust.json"
                      (if (and base (not (string-empty-p (string-trim base))))
                          base
                        (expand-file-name ".config" (getenv "HOME"))))))

(defun cao-trust--real (dir)
  "DIR with symlinks resolved, as a file name without a trailing slash."
  (directory-file-name (file-truename (expand-file-name dir))))

(defun cao-trust-folders ()
  "The real paths of the trusted folders.
A missing, unreadable or corrupt store trusts nothing."
  (let ((file (cao-trust-store-file)))
    (when (file-readable-p file)
      (condition-case nil
          (let* ((json-object-type 'alist) (json-key-type 'string) (json-array-type 'list)
                 (store (json-read-file file))
                 (trusted (and (listp store) (equal (cdr (assoc "version" store)) 1)
                               (cdr (assoc "trusted" store)))))
            (delete-dups
             (cl-loop for (key . _) in (and (listp trusted) trusted)
                      when (and (stringp key) (file-name-absolute-p key))
                      append (list (directory-file-name key) (cao-trust--real key)))))
        (error nil)))))

(defun cao-trust-trusted-by (root)
  "The trusted folder (ROOT itself or one of its parents) that covers ROOT, or nil."
  (let ((folders (cao-trust-folders))
        (dir (cao-trust--real root))
        found)
    (while (and dir (not found))
      (if (member dir folders)
          (setq found dir)
        (let ((parent (directory-file-name (file-name-directory dir))))
          (setq dir (unless (equal parent dir) parent)))))
    found))

(defun cao-trust-p (root)
  "Non-nil if the user trusts ROOT (or a folder above it)."
  (and (cao-trust-trusted-by root) t))

(defun cao-trust-has-config-p (root)
  "Non-nil if ROOT has a .cao/ directory."
  (file-directory-p (expand-file-name ".cao" root)))


;;; The one question per folder

(defun cao-trust--asked ()
  "The real paths of the folders already asked about."
  (when (file-readable-p cao-trust-asked-file)
    (condition-case nil
        (with-temp-buffer
          (insert-file-contents cao-trust-asked-file)
          (let ((value (read (current-buffer))))
            (and (listp value) (cl-remove-if-not #'stringp value))))
      (error nil))))

(defun cao-trust-asked-p (root)
  "Non-nil if cao.el already asked about trusting ROOT."
  (and (member (cao-trust--real root) (cao-trust--asked)) t))

(defun cao-trust--remember-asked (root)
  "Remember that cao.el asked about ROOT."
  (let ((asked (cons (cao-trust--real root) (cao-trust--asked))))
    (make-directory (file-name-directory cao-trust-asked-file) t)
    (with-temp-file cao-trust-asked-file
      (let ((print-length nil) (print-level nil))
        (insert ";; Folders cao.el asked about trusting (see `cao-trust-ask').\n")
        (prin1 (delete-dups asked) (current-buffer))
        (insert "\n")))))

(defun cao-trust-maybe-ask (root)
  "Ask once whether to trust ROOT, if it has a .cao/ and is not trusted.
Return `trust' if the user said yes, `not-now' if no (or quit), nil if
not asked.  Remembered per folder whatever the answer."
  (when (and cao-trust-ask (cao-trust-has-config-p root)
             (not (cao-trust-p root)) (not (cao-trust-asked-p root)))
    (cao-trust--remember-asked root)
    (if (condition-case nil
            (let ((inhibit-quit nil))
              (y-or-n-p (format "cao: %s has a .cao/ (agent profiles, flows, providers); \
until you trust it, nothing in it runs.  Trust this folder? "
                                (abbreviate-file-name (directory-file-name root)))))
          (quit nil))
        'trust
      (message "cao: %s stays untrusted; M-x cao-trust to trust it later"
               (abbreviate-file-name (directory-file-name root)))
      'not-now)))


;;; The command line

(defun cao-trust-run-cli (program root trusted)
  "Run PROGRAM (a list: cao-sidecar and its arguments) trust [--revoke] ROOT.
TRUSTED nil revokes.  Signal a `user-error' with its output when it fails."
  (let* ((argv (append program (if trusted '("trust") '("trust" "--revoke"))
                       (list (directory-file-name (expand-file-name root)))))
         (status nil)
         (output (with-temp-buffer
                   (setq status (condition-case err
                                    (apply #'call-process (car argv) nil t nil (cdr argv))
                                  (file-error (error-message-string err))))
                   (string-trim (buffer-string)))))
    (unless (equal status 0)
      (user-error "cao: %s failed (%s)%s" (string-join argv " ") status
                  (if (string-empty-p output) "" (concat ": " output))))
    output))


;;; What the sidecar says

(defun cao-trust-changes (old new)
  "The TrustInfo plists of NEW whose trust differs from the same folder's in OLD."
  (cl-loop for info in (append new nil)
           for before = (cl-find (plist-get info :path) (append old nil)
                                 :key (lambda (i) (plist-get i :path)) :test #'equal)
           when (and before (not (eq (cao-trust--true-p (plist-get before :trusted))
                                     (cao-trust--true-p (plist-get info :trusted)))))
           collect info))

(defun cao-trust--true-p (value)
  "Non-nil if the JSON boolean VALUE is true."
  (and value (not (eq value :json-false))))

(defun cao-trust-describe-change (info)
  "One line saying that the folder of INFO (a TrustInfo plist) changed trust."
  (let ((path (abbreviate-file-name (plist-get info :path)))
        (held (append (plist-get info :heldBack) nil)))
    (if (cao-trust--true-p (plist-get info :trusted))
        (format "cao: %s is now trusted: its .cao/ is in force" path)
      (format "cao: %s is no longer trusted: its .cao/ is not in force%s" path
              (if held (format " (held back: %s)" (string-join held "; ")) "")))))

(defun cao-trust-untrusted-config-p (folders)
  "Non-nil if one of FOLDERS (TrustInfo plists) has a .cao/ and is not trusted."
  (cl-some (lambda (info) (and (cao-trust--true-p (plist-get info :hasConfig))
                               (not (cao-trust--true-p (plist-get info :trusted)))))
           (append folders nil)))

(provide 'cao-trust)
;;; cao-trust.el ends here
